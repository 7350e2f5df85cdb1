#!/usr/bin/env python3
"""Tests of the project's own checks, scripts/check-module-cycles and
scripts/check-file-sizes, on small crates written to a temporary directory.

Run: python3 scripts/check.d/test_checks.py     (.ci/run does)
"""

import contextlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import tempfile
import textwrap
import unittest

sys.dont_write_bytecode = True
SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), os.path.join(SCRIPTS, name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


cycles_script = load("check-module-cycles")
sizes_script = load("check-file-sizes")


class Crate:
    """A src/ directory with the given files ({relative path: text})."""

    def __init__(self, files):
        self.dir = tempfile.TemporaryDirectory()
        self.src = os.path.join(self.dir.name, "src")
        files = {"lib.rs": "", **files}
        for rel, text in files.items():
            path = os.path.join(self.src, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text))

    def run(self, script, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = script.main(["script", *args, self.src])
        self.dir.cleanup()
        return status, out.getvalue()


def cycles(files):
    return Crate(files).run(cycles_script)


class ModuleCycles(unittest.TestCase):
    def assertCycle(self, files, *modules):
        status, out = cycles(files)
        self.assertEqual(status, 1, out)
        self.assertIn("cycle: " + " <-> ".join(modules), out)
        self.assertTrue(out.endswith("\n1\n"), out)

    def assertNoCycle(self, files):
        status, out = cycles(files)
        self.assertEqual((status, out), (0, "0\n"))

    def test_a_cycle_through_crate_paths(self):
        self.assertCycle(
            {
                "a.rs": "use crate::b::B;\npub struct A;\n",
                "b.rs": "pub struct B;\npub fn f() { let _ = crate::a::A; }\n",
            },
            "a",
            "b",
        )

    def test_a_cycle_through_super_paths_between_siblings(self):
        # The shape gcr_auth had: two files of one module, one constant.
        files = {
            "auth/mod.rs": "mod keys;\nmod token;\n",
            "auth/keys.rs": "use super::token::ALGORITHM;\npub struct KeySet;\n",
            "auth/token.rs": "use super::keys::KeySet;\npub const ALGORITHM: &str = \"RS256\";\n",
        }
        status, out = cycles(files)
        self.assertEqual(status, 1)
        self.assertIn("cycle: auth::keys <-> auth::token", out)
        self.assertIn("auth/keys.rs:1: auth::keys names auth::token (super::token::ALGORITHM)", out)
        self.assertIn("auth/token.rs:1: auth::token names auth::keys (super::keys::KeySet)", out)

    def test_the_same_constant_in_the_parent_is_no_cycle(self):
        self.assertNoCycle(
            {
                "auth/mod.rs": "mod keys;\nmod token;\npub use keys::KeySet;\npub const ALGORITHM: &str = \"RS256\";\n",
                "auth/keys.rs": "use super::ALGORITHM;\npub struct KeySet;\n",
                "auth/token.rs": "use super::keys::KeySet;\nuse super::ALGORITHM;\n",
            }
        )

    def test_a_cycle_hidden_behind_a_re_export(self):
        # keys reaches token's constant through the parent's `pub use`.
        self.assertCycle(
            {
                "auth/mod.rs": "mod keys;\nmod token;\npub use token::{Token, ALGORITHM};\n",
                "auth/keys.rs": "use super::ALGORITHM;\npub struct KeySet;\n",
                "auth/token.rs": "use super::keys::KeySet;\npub const ALGORITHM: &str = \"\";\n",
            },
            "auth::keys",
            "auth::token",
        )

    def test_super_super_and_inline_super_paths(self):
        self.assertCycle(
            {
                "a/mod.rs": "mod x;\n",
                "a/x.rs": "pub fn f() { super::super::b::g() }\n",
                "b.rs": "pub fn g() { let _ = crate::a::x::f; }\n",
            },
            "a::x",
            "b",
        )

    def test_nested_use_groups(self):
        self.assertCycle(
            {
                "a.rs": "use crate::{x, c::{d::{D, E as F}}};\n",
                "c/mod.rs": "pub mod d;\n",
                "c/d.rs": "pub struct D;\npub struct E;\nfn f() { crate::a::g() }\n",
                "x.rs": "",
            },
            "a",
            "c::d",
        )

    def test_self_in_a_group_renamed(self):
        # `b::{self as bee}` binds `bee` to b: `bee::inner::g()` names b::inner.
        self.assertCycle(
            {
                "a.rs": "use crate::{b::{self as bee}};\npub fn f() { bee::inner::g(); }\n",
                "b/mod.rs": "pub mod inner;\n",
                "b/inner.rs": "pub fn g() { crate::a::f() }\n",
            },
            "a",
            "b::inner",
        )

    def test_a_name_brought_in_by_use_is_followed(self):
        # `use crate::c;` then `c::d::f()`: the edge goes to c::d.
        self.assertCycle(
            {
                "c/mod.rs": "pub mod d;\n",
                "c/d.rs": "pub fn f() { crate::e::g() }\n",
                "e.rs": "use crate::c;\npub fn g() { c::d::f() }\n",
            },
            "c::d",
            "e",
        )

    def test_self_paths_name_the_module_itself(self):
        self.assertNoCycle(
            {
                "a.rs": "pub fn f() { self::g() }\nfn g() { crate::b::h() }\n",
                "b.rs": "use self::inner::X;\nmod inner { pub struct X; }\npub fn h() {}\n",
            }
        )

    def test_use_super_star_in_a_test_module_is_no_cycle(self):
        # The repository writes unit tests as `#[cfg(test)] mod tests { use
        # super::*; … }`, and tests may reach for helpers anywhere.
        self.assertNoCycle(
            {
                "a.rs": """
                    pub fn f() {}
                    #[cfg(test)]
                    mod tests {
                        use super::*;
                        use crate::b::helper;
                        #[test]
                        fn t() { f(); helper(); super::f(); }
                    }
                """,
                "b.rs": """
                    use crate::a::f;
                    pub fn helper() { f() }
                    #[cfg(test)]
                    pub(crate) fn only_for_tests() { crate::a::f() }
                """,
            }
        )

    def test_a_test_module_in_a_file_of_its_own_is_no_cycle(self):
        self.assertNoCycle(
            {
                "r/mod.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests;\n",
                "r/tests.rs": "use super::*;\nuse crate::s::g;\n",
                "s.rs": "pub fn g() { crate::r::f() }\n",
            }
        )

    def test_a_module_and_its_children_are_no_cycle(self):
        self.assertNoCycle(
            {
                "p/mod.rs": "mod c;\npub use c::C;\npub struct P;\nfn f() { c::g() }\n",
                "p/c.rs": "use super::P;\npub struct C;\npub fn g() {}\n",
            }
        )

    def test_comments_strings_and_visibility_are_not_read(self):
        self.assertNoCycle(
            {
                "a.rs": """
                    //! See [`crate::b::B`] and [`super::b`].
                    /// Calls crate::b::g() /* crate::b::g() */
                    pub(in crate::b) fn f() -> &'static str { "crate::b::g()" }
                    const C: char = '"';
                    const R: &str = r#"crate::b::g() " "#;
                """,
                "b.rs": "pub fn g() { crate::a::f(); }\n",
            }
        )

    def test_extern_crates_are_not_modules(self):
        self.assertNoCycle(
            {
                "a.rs": "use http::HeaderMap;\nuse ::b::x;\n",
                "b.rs": "pub fn g() { crate::a::f(); }\n",
            }
        )

    def test_the_repository_has_no_cycle(self):
        status, out = Crate({}).run(cycles_script)  # an empty crate first
        self.assertEqual((status, out), (0, "0\n"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = cycles_script.main(["check-module-cycles"])
        self.assertEqual((status, out.getvalue()), (0, "0\n"))


def lines(n, prefix="let _ = 0;"):
    return "".join(f"{prefix}\n" for _ in range(n))


class FileSizes(unittest.TestCase):
    def setUp(self):
        self.known = sizes_script.KNOWN
        sizes_script.KNOWN = {}

    def tearDown(self):
        sizes_script.KNOWN = self.known

    def run_sizes(self, files):
        return Crate(files).run(sizes_script)

    def test_tests_do_not_count_wherever_they_are(self):
        code = "fn f() {\n" + lines(LIMIT - 2) + "}\n"  # LIMIT lines
        tests = "#[cfg(test)]\nmod tests {\n" + lines(300) + "}\n"
        helper = "/// A test helper.\n#[cfg(test)]\n#[derive(Debug)]\nstruct T {\n    a: u8,\n}\n"
        status, out = self.run_sizes(
            {
                "a.rs": tests + code + helper,
                "b/mod.rs": code + "#[cfg(test)]\nmod tests;\n",
                "b/tests.rs": lines(900),
            }
        )
        self.assertEqual((status, out), (0, ""))

    def test_one_line_over_fails_and_says_which(self):
        code = "fn f() {\n" + lines(LIMIT - 1) + "}\n"
        status, out = self.run_sizes({"a.rs": code + "#[cfg(test)]\nmod tests {}\n"})
        self.assertEqual(status, 1)
        self.assertEqual(out, f"  {LIMIT + 1} src/a.rs over {LIMIT}: split it\n")

    def test_doc_comments_and_blank_lines_count(self):
        code = "//! A module.\n\n" + lines(LIMIT - 3, "/// Docs.") + "fn f() {}\n"
        self.assertEqual(self.run_sizes({"a.rs": code})[0], 0)
        self.assertEqual(self.run_sizes({"a.rs": "\n" + code})[0], 1)

    def test_a_known_file_may_shrink_not_grow(self):
        big = lines(LIMIT + 10)
        sizes_script.KNOWN = {"a.rs": LIMIT + 10}
        self.assertEqual(self.run_sizes({"a.rs": big})[0], 0)
        self.assertEqual(self.run_sizes({"a.rs": big[: -len("let _ = 0;\n") * 5]})[0], 0)
        status, out = self.run_sizes({"a.rs": big + "fn g() {}\n"})
        self.assertEqual(status, 1)
        self.assertIn("grown from 610", out)
        status, out = self.run_sizes({"a.rs": lines(LIMIT)})
        self.assertEqual(status, 1)
        self.assertIn("take it off KNOWN", out)

    def test_the_repository_is_within_the_limit(self):
        sizes_script.KNOWN = self.known
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = sizes_script.main(["check-file-sizes"])
        self.assertEqual(status, 0, out.getvalue())


LIMIT = sizes_script.LIMIT

if __name__ == "__main__":
    unittest.main()
