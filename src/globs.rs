//! Glob lists compiled into one automaton that matches in linear time.
//!
//! The syntax and its meaning are those of the `glob` crate (0.3), which
//! filters used before, matched with literal separators:
//!
//! - `?` is one character and `*` any run of characters, both within one
//!   `/`-separated element;
//! - `**` is a whole element (`a/**/b`, `**/b`, `a/**`; `a**` is an error)
//!   and crosses elements: `a/**/b` takes `a/b` and `a/x/y/b`, `a/**` takes
//!   everything under `a/`, `**` alone everything;
//! - `[abc]`, `[a-z]` and `[!abc]` are one character (never `/`) in or out
//!   of the set; `]` first in a set is itself (`[]]`, `[!]]`), `-` first or
//!   last too, and `^` is an ordinary character;
//! - every other character, `\`, `{` and `,` included, is itself; case
//!   counts.
//!
//! `glob` matched by backtracking: a pattern with three stars took time
//! cubic in the name's length, and a name crafted against it kept the
//! runtime's threads busy for seconds (see `benches/filter.rs`). Here the
//! patterns are translated once, when the table is built, into a single
//! regular expression, which the `regex` crate runs in time linear in the
//! name whatever the patterns are.

use std::fmt::Write as _;

/// A compiled glob list: does any of its patterns take a whole name?
#[derive(Debug, Clone)]
pub struct GlobList {
    any: regex::Regex,
}

/// Why a pattern is not a glob, in `glob` 0.3's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    /// Where in the pattern (in characters) the problem is.
    pub pos: usize,
    /// What is wrong.
    pub msg: &'static str,
}

const ERROR_WILDCARDS: &str = "wildcards are either regular `*` or recursive `**`";
const ERROR_RECURSIVE_WILDCARDS: &str = "recursive wildcards must form a single path component";
const ERROR_INVALID_RANGE: &str = "invalid range pattern";

/// One element of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    AnyChar,
    /// `*`
    AnySequence,
    /// `**`, with the `/` after it if there is one.
    AnyRecursiveSequence,
    /// `[…]`
    AnyWithin(Vec<(char, char)>),
    /// `[!…]`
    AnyExcept(Vec<(char, char)>),
}

impl GlobList {
    /// Compile `patterns`; the problems of those that are not globs
    /// otherwise, each with its pattern.
    pub fn new<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<GlobList, Vec<(&'a str, GlobError)>> {
        let mut alternatives = Vec::new();
        let mut errors = Vec::new();
        for pattern in patterns {
            match parse(pattern) {
                Ok(tokens) => alternatives.push(regex_of(&tokens)),
                Err(e) => errors.push((pattern, e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // `(?s)`: `.` takes a newline too, as a glob's `**` does.
        let expression = format!("(?s)^(?:{})$", alternatives.join("|"));
        let any = regex::RegexBuilder::new(&expression).build().map_err(|_| {
            // Only a list too large for the regex crate's limits gets
            // here: every piece was written for it.
            let whole = GlobError {
                pos: 0,
                msg: "the patterns together are too large to compile",
            };
            vec![("", whole)]
        })?;
        Ok(GlobList { any })
    }

    /// Whether some pattern takes the whole of `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.any.is_match(name)
    }
}

/// Split a pattern into tokens exactly as `glob::Pattern::new` (0.3) does,
/// refusing what it refuses.
fn parse(pattern: &str) -> Result<Vec<Token>, GlobError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '?' => {
                tokens.push(Token::AnyChar);
                i += 1;
            }
            '*' => {
                let old = i;
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                match i - old {
                    1 => tokens.push(Token::AnySequence),
                    2 => {
                        // A whole element: at the start or after a `/`, and
                        // at the end or before one (which it takes).
                        let starts_element = old == 0 || chars[old - 1] == '/';
                        if !starts_element {
                            return Err(GlobError {
                                pos: old - 1,
                                msg: ERROR_RECURSIVE_WILDCARDS,
                            });
                        }
                        if i < chars.len() && chars[i] == '/' {
                            i += 1;
                        } else if i < chars.len() {
                            return Err(GlobError {
                                pos: i,
                                msg: ERROR_RECURSIVE_WILDCARDS,
                            });
                        }
                        // `glob` folds `a/**/**/b` into one, though not at
                        // the very start; either way the meaning is the same.
                        if !(tokens.len() > 1
                            && tokens.last() == Some(&Token::AnyRecursiveSequence))
                        {
                            tokens.push(Token::AnyRecursiveSequence);
                        }
                    }
                    _ => {
                        return Err(GlobError {
                            pos: old + 2,
                            msg: ERROR_WILDCARDS,
                        })
                    }
                }
            }
            '[' => {
                // `[!` needs one character and a `]` after it; `[` one and a
                // `]`; a `]` right after the opening is in the set.
                let close_after = |from: usize| chars[from..].iter().position(|c| *c == ']');
                if i + 4 <= chars.len() && chars[i + 1] == '!' {
                    if let Some(j) = close_after(i + 3) {
                        tokens.push(Token::AnyExcept(ranges(&chars[i + 2..i + 3 + j])));
                        i += j + 4;
                        continue;
                    }
                } else if i + 3 <= chars.len() && chars[i + 1] != '!' {
                    if let Some(j) = close_after(i + 2) {
                        tokens.push(Token::AnyWithin(ranges(&chars[i + 1..i + 2 + j])));
                        i += j + 3;
                        continue;
                    }
                }
                return Err(GlobError {
                    pos: i,
                    msg: ERROR_INVALID_RANGE,
                });
            }
            c => {
                tokens.push(Token::Char(c));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// The characters of a set, as inclusive ranges: `a-z` is one, any other
/// character a range of itself.
fn ranges(set: &[char]) -> Vec<(char, char)> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < set.len() {
        if i + 3 <= set.len() && set[i + 1] == '-' {
            ranges.push((set[i], set[i + 2]));
            i += 3;
        } else {
            ranges.push((set[i], set[i]));
            i += 1;
        }
    }
    ranges
}

/// The regular expression of one pattern's tokens.
fn regex_of(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (at, token) in tokens.iter().enumerate() {
        match token {
            Token::Char(c) => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            Token::AnyChar => out.push_str("[^/]"),
            Token::AnySequence => out.push_str("[^/]*"),
            Token::AnyRecursiveSequence => {
                // Nothing, or through a `/`; and where only stars follow,
                // the rest of the name whatever it is (`a/**` takes `a/b`).
                let only_stars_follow = tokens[at + 1..]
                    .iter()
                    .all(|t| matches!(t, Token::AnySequence | Token::AnyRecursiveSequence));
                out.push_str(if only_stars_follow { ".*" } else { "(?:.*/)?" });
            }
            Token::AnyWithin(set) => {
                out.push_str("[[");
                push_ranges(&mut out, set);
                out.push_str("]&&[^/]]");
            }
            Token::AnyExcept(set) => {
                out.push_str("[^/");
                push_ranges(&mut out, set);
                out.push(']');
            }
        }
    }
    out
}

/// `set` inside a bracketed class, each character as `\x{…}` so that none
/// means anything to the regex syntax. A backwards range takes nothing, as
/// in `glob`; a set of nothing never matches.
fn push_ranges(out: &mut String, set: &[(char, char)]) {
    let mut any = false;
    for &(from, to) in set.iter().filter(|(from, to)| from <= to) {
        any = true;
        let _ = write!(out, "\\x{{{:x}}}-\\x{{{:x}}}", from as u32, to as u32);
    }
    if !any {
        // An empty class: every character taken out of every character.
        out.push_str("[\\x{0}-\\x{10FFFF}&&[^\\x{0}-\\x{10FFFF}]]");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        GlobList::new([pattern]).unwrap().matches(name)
    }

    #[test]
    fn the_syntax_means_what_it_meant() {
        // (pattern, name, taken)
        let table = [
            ("main", "main", true),
            ("main", "mainline", false),
            ("main", "Main", false),
            ("release/*", "release/1.2", true),
            ("release/*", "release/", true),
            ("release/*", "release/1.2/hotfix", false),
            ("release/*", "release", false),
            ("v*.*.*", "v1.2.3", true),
            ("v*.*.*", "v1.2.3-rc.1", true),
            ("v*.*.*", "v1.2", false),
            ("v*.*.*", "v1.2.3/x", false),
            ("*", "", true),
            ("*", ".hidden", true),
            ("*", "a/b", false),
            ("?", "é", true),
            ("?", "/", false),
            ("?", "", false),
            ("**", "", true),
            ("**", "a/b/c", true),
            ("a/**", "a/", true),
            ("a/**", "a/b/c", true),
            ("a/**", "a", false),
            ("**/b", "b", true),
            ("**/b", "x/y/b", true),
            ("**/b", "/b", true),
            ("**/b", "xb", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a//b", true),
            ("a/**/b", "a/xb", false),
            ("[ab]", "a", true),
            ("[ab]", "c", false),
            ("[a-c]x", "bx", true),
            ("[!a]", "b", true),
            ("[!a]", "a", false),
            ("[!a]", "/", false),
            ("[a/]", "/", false),
            ("[^a]", "^", true),
            ("[^a]", "b", false),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("[!]]", "]", false),
            ("[a-]", "-", true),
            ("[z-a]", "m", false),
            ("[!z-a]", "m", true),
            ("{a,b}", "a", false),
            ("{a,b}", "{a,b}", true),
            ("a\\b", "a\\b", true),
            ("a.b", "axb", false),
            ("(a|b)+", "(a|b)+", true),
            ("team/$x", "team/$x", true),
        ];
        for (pattern, name, taken) in table {
            assert_eq!(matches(pattern, name), taken, "{pattern:?} on {name:?}");
        }
        // A list takes what any of its patterns takes.
        let list = GlobList::new(["main", "release/*"]).unwrap();
        assert!(list.matches("main") && list.matches("release/1") && !list.matches("dev"));
    }

    #[test]
    fn what_glob_refused_is_refused_with_its_words() {
        for (pattern, msg) in [
            ("a**", ERROR_RECURSIVE_WILDCARDS),
            ("**a", ERROR_RECURSIVE_WILDCARDS),
            ("a/**b", ERROR_RECURSIVE_WILDCARDS),
            ("***", ERROR_WILDCARDS),
            ("[", ERROR_INVALID_RANGE),
            ("[]", ERROR_INVALID_RANGE),
            ("[!]", ERROR_INVALID_RANGE),
            ("[a", ERROR_INVALID_RANGE),
        ] {
            let errors = GlobList::new([pattern]).unwrap_err();
            assert_eq!(errors.len(), 1, "{pattern}");
            assert_eq!((errors[0].0, errors[0].1.msg), (pattern, msg));
        }
        let errors = GlobList::new(["ok", "[", "a**"]).unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    /// The old matcher, `glob` 0.3, as filters called it.
    fn old(pattern: &str, name: &str) -> Option<bool> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let p = glob::Pattern::new(pattern).ok()?;
        Some(p.matches_with(name, options))
    }

    fn same_as_glob(pattern: &str, names: &[String]) {
        let old_parse = glob::Pattern::new(pattern);
        let new = GlobList::new([pattern]);
        assert_eq!(
            new.as_ref().err().map(|e| e[0].1.msg),
            old_parse.as_ref().err().map(|e| e.msg),
            "{pattern:?}"
        );
        let Ok(new) = new else { return };
        for name in names {
            assert_eq!(
                Some(new.matches(name)),
                old(pattern, name),
                "{pattern:?} on {name:?}"
            );
        }
    }

    /// Every string of up to `len` pieces of `alphabet`.
    fn strings(alphabet: &[&str], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn every_short_pattern_matches_every_short_name_as_glob_did() {
        let pieces = [
            "a", "b", "/", ".", "*", "**", "?", "[ab]", "[!a]", "[]]", "[b-a]", "[", "!", "]",
        ];
        let names = strings(&["a", "b", "/", ".", "]"], 4);
        for pattern in strings(&pieces, 3) {
            same_as_glob(&pattern, &names);
        }
    }

    #[test]
    fn longer_random_patterns_match_as_glob_did() {
        let pieces = [
            "a", "b", "/", "*", "**", "?", "[a-b]", "[!b]", "-", "**/", "/**",
        ];
        let letters = ["a", "b", "/", "-"];
        let mut rng = fastrand::Rng::with_seed(20);
        let mut pick = |from: &[&str], most: usize| -> String {
            let n = rng.usize(0..=most);
            (0..n).map(|_| from[rng.usize(..from.len())]).collect()
        };
        for _ in 0..2_000 {
            let pattern = pick(&pieces, 6);
            let names: Vec<String> = (0..40).map(|_| pick(&letters, 9)).collect();
            same_as_glob(&pattern, &names);
        }
    }
}
