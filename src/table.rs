//! The endpoint table: every hook URL flux-recv serves, built in one
//! fallible step from the config file and the key files it names.
//!
//! A table is immutable. Reloading builds a whole new one and swaps it in
//! through a [`TableHandle`], so a request that loaded a table sees one
//! consistent set of endpoints, their targets included, from start to end.
//! The table knows nothing of HTTP.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{ConfigFile, Problem, Severity};
use crate::endpoint::{key_path, Endpoint};
use crate::targets::fluxd::Fluxd;
use crate::targets::Target;

/// The table being served: requests load it, reload stores a new one.
pub type TableHandle = Arc<ArcSwap<Table>>;

/// Every endpoint, and where to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The config file this table was built from.
    pub config_path: PathBuf,
    /// `--api` (`FLUXRECV_API`), if given: kept so that a reload builds the
    /// next table the way this one was built.
    pub api_flag: Option<String>,
    /// Where changes go for endpoints that name no target: fluxd at
    /// `--api` if given, else at the config's top-level `api`. A list of
    /// one, so [`Table::targets_of`] lends either kind of list alike.
    default_targets: Arc<[Target]>,
    endpoints: Vec<Arc<Endpoint>>,
    by_fingerprint: HashMap<String, Arc<Endpoint>>,
}

/// The result of building a table: the table if there were no errors, and
/// every problem found (errors and warnings) either way.
#[derive(Debug)]
pub struct Loaded {
    /// `Some` when no problem is an error.
    pub table: Option<Table>,
    /// Everything worth telling the operator, in config order.
    pub problems: Vec<Problem>,
    /// The config file and the key files it names, whether or not the
    /// table built: when a config names a key that is not there yet, its
    /// arrival is the fix, so it is watched for.
    pub files: BTreeSet<PathBuf>,
}

impl Loaded {
    /// The errors, if any.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }
}

impl Table {
    /// Read the config file and every key it names, and build a table;
    /// `api_flag` (`--api`), if given, replaces the config's top-level
    /// `api`. Every problem is collected, so one run reports them all.
    pub fn load(config_path: &Path, api_flag: Option<&str>) -> Loaded {
        match read_config(config_path) {
            Ok(config) => Table::build(config_path, &config, api_flag),
            Err(problems) => Loaded {
                table: None,
                problems,
                files: BTreeSet::from([config_path.to_path_buf()]),
            },
        }
    }

    /// Build a table from a parsed config, reading the key files; with
    /// `api_flag` as in [`Table::load`].
    pub fn build(config_path: &Path, config: &ConfigFile, api_flag: Option<&str>) -> Loaded {
        let mut problems = Vec::new();
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        let mut by_fingerprint: HashMap<String, Arc<Endpoint>> = HashMap::new();

        for (i, ep) in config.endpoints.iter().enumerate() {
            let (endpoint, found) = Endpoint::build(config_path, i, ep);
            problems.extend(found);
            let Some(endpoint) = endpoint else { continue };
            if let Some(first) = by_fingerprint.get(&endpoint.fingerprint) {
                problems.push(Problem::error(
                    config_path,
                    format!("endpoints[{i}]"),
                    format!(
                        "has the same key (and registryHost) as endpoints[{}], so both \
                         would have the same hook URL; give each endpoint its own key",
                        first.position - 1
                    ),
                ));
                continue;
            }
            let endpoint = Arc::new(endpoint);
            by_fingerprint.insert(endpoint.fingerprint.clone(), endpoint.clone());
            endpoints.push(endpoint);
        }

        let ok = !problems.iter().any(|p| p.severity == Severity::Error);
        // The files a problem is about too (a token file not there yet),
        // and those of the targets built.
        let files = std::iter::once(config_path.to_path_buf())
            .chain(config.endpoints.iter().map(|ep| key_path(config_path, ep)))
            .chain(problems.iter().map(|p| p.file.clone()))
            .chain(endpoints.iter().flat_map(|e| target_files(e)))
            .collect();
        Loaded {
            table: ok.then(|| Table {
                config_path: config_path.to_path_buf(),
                api_flag: api_flag.map(str::to_string),
                default_targets: Arc::new([default_target(config, api_flag)]),
                endpoints,
                by_fingerprint,
            }),
            problems,
            files,
        }
    }

    /// The endpoint serving `/hook/<fingerprint>`.
    pub fn get(&self, fingerprint: &str) -> Option<&Arc<Endpoint>> {
        self.by_fingerprint.get(fingerprint)
    }

    /// Every endpoint, in config order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Where changes go for endpoints that name no target: fluxd at
    /// `--api` if given, else at the config's top-level `api`.
    pub fn default_target(&self) -> &Target {
        &self.default_targets[0]
    }

    /// Where `endpoint`'s changes go: its own targets, else the table's
    /// ([`Table::default_target`]). Shared, not copied: a request clones
    /// the list with one reference count.
    pub fn targets_of<'a>(&'a self, endpoint: &'a Endpoint) -> &'a Arc<[Target]> {
        endpoint.targets.as_ref().unwrap_or(&self.default_targets)
    }

    /// The files this table was built from: the config, every key, and
    /// every file a target reads (a token).
    pub fn files(&self) -> BTreeSet<PathBuf> {
        std::iter::once(self.config_path.clone())
            .chain(self.endpoints.iter().map(|e| e.key_path.clone()))
            .chain(self.endpoints.iter().flat_map(|e| target_files(e)))
            .collect()
    }

    /// Every target of the table, the default's and each endpoint's, with
    /// repeats: what a pending request's target is refreshed from when
    /// this table is swapped in.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.default_targets.iter().chain(
            self.endpoints
                .iter()
                .flat_map(|e| e.targets.iter().flat_map(|t| t.iter())),
        )
    }

    /// The directories those files are in. Watching these (not the files)
    /// is what catches a Kubernetes Secret update.
    pub fn directories(&self) -> BTreeSet<PathBuf> {
        self.files().iter().map(|f| directory_of(f)).collect()
    }
}

/// Where changes go for endpoints that name no target: fluxd at `api_flag`
/// (`--api`) if given, else at `config`'s top-level `api` (both already
/// checked), else in the same pod.
pub fn default_target(config: &ConfigFile, api_flag: Option<&str>) -> Target {
    Target::from(Fluxd::new(api_flag.unwrap_or(&config.api())))
}

/// The files `endpoint`'s targets read.
fn target_files(endpoint: &Endpoint) -> Vec<PathBuf> {
    let targets = endpoint.targets.iter().flat_map(|t| t.iter());
    targets
        .flat_map(|t| t.files().into_iter().map(Path::to_path_buf))
        .collect()
}

/// The directory a file is in; `.` for a bare file name.
pub fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Read and parse a config file: the first half of [`Table::load`], for
/// callers (`flux-recv check`) that look at the config itself too. A file
/// that does not parse has its first problem, then every unknown field
/// ([`ConfigFile::parse_all`]).
pub fn read_config(config_path: &Path) -> Result<ConfigFile, Vec<Problem>> {
    let text = crate::files::read_regular(config_path, crate::files::CONFIG).map_err(|e| {
        vec![Problem::error(
            config_path,
            "",
            format!("cannot read the config file: {}", e.kind),
        )]
    })?;
    ConfigFile::parse_all(config_path, &text)
}

/// How a table's endpoints differ from those of the table it replaces, as
/// reload logs it.
#[derive(Debug)]
pub struct EndpointChanges<'a> {
    /// Endpoints the old table did not have.
    pub added: Vec<&'a Endpoint>,
    /// Endpoints of the old table this one does not have.
    pub removed: Vec<&'a Endpoint>,
    /// Endpoints in both whose other settings (a `gcr:` block, say)
    /// changed, as they are now.
    pub changed: Vec<&'a Endpoint>,
}

impl Table {
    /// What changed from `before` to this table.
    pub fn changes_from<'a>(&'a self, before: &'a Table) -> EndpointChanges<'a> {
        EndpointChanges {
            added: missing_from(self, before),
            removed: missing_from(before, self),
            changed: changed_settings(before, self),
        }
    }
}

/// The same endpoint in both tables: same URL, same source, same key file.
/// Anything else is a removal and an addition, which is what an operator
/// needs to hear about (a rotated key is a new URL).
fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    a.fingerprint == b.fingerprint && a.source == b.source && a.key_path == b.key_path
}

/// Endpoints of `table` that `other` does not have.
fn missing_from<'a>(table: &'a Table, other: &Table) -> Vec<&'a Endpoint> {
    table
        .endpoints()
        .iter()
        .filter(|e| {
            !other
                .get(&e.fingerprint)
                .is_some_and(|o| same_endpoint(e, o))
        })
        .map(|e| &**e)
        .collect()
}

/// Endpoints in both tables whose other settings (e.g. a `gcr:` block)
/// changed, as they are now.
fn changed_settings<'a>(before: &Table, after: &'a Table) -> Vec<&'a Endpoint> {
    after
        .endpoints()
        .iter()
        .filter(|e| {
            before
                .get(&e.fingerprint)
                .is_some_and(|b| same_endpoint(e, b) && !b.same_settings(e))
        })
        .map(|e| &**e)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GcrAuth;
    use crate::endpoint::fingerprint;
    use crate::source::Source;
    use std::fs;

    fn fluxd(base: &str) -> Target {
        Target::from(Fluxd::new(base))
    }

    fn dir_with(config: &str, keys: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("fluxrecv.yaml"), config).unwrap();
        for (name, key) in keys {
            fs::write(dir.path().join(name), key).unwrap();
        }
        dir
    }

    #[test]
    fn fingerprints_match_the_go_original() {
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let github = fs::read(testdata.join("github_key")).unwrap();
        assert_eq!(
            fingerprint(&github, None),
            "5535282db5ba52f5d1aa1ef5c3d458deddbdca22979d1575b928da8814fd3f73"
        );
        let nexus = fs::read(testdata.join("nexus_key")).unwrap();
        assert_eq!(
            fingerprint(&nexus, Some("container.example.com")),
            "37aea278ec43e68f76dba33f66f39761190f8f3d6e86306c864868dc6063283a"
        );
    }

    #[test]
    fn builds_a_table_with_relative_and_absolute_keys() {
        let other = tempfile::tempdir().unwrap();
        let abs_key = other.path().join("abs.key");
        fs::write(&abs_key, b"0123456789abcdef-abs").unwrap();
        let dir = dir_with(
            &format!(
                "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n- source: DockerHub\n  key: {}\n",
                abs_key.display()
            ),
            &[("gh.key", b"0123456789abcdef-gh")],
        );
        let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
        let table = loaded.table.expect("table");
        assert_eq!(table.endpoints().len(), 2);
        assert_eq!(table.endpoints()[0].key_path, dir.path().join("gh.key"));
        assert_eq!(table.endpoints()[1].key_path, abs_key);
        assert_eq!(table.endpoints()[1].position, 2);
        let fp = fingerprint(b"0123456789abcdef-gh", None);
        assert_eq!(table.get(&fp).unwrap().source, Source::named("GitHub"));
        assert_eq!(table.get(&fp).unwrap().url_path(), format!("/hook/{fp}"));
        let endpoint = &table.endpoints()[0];
        assert_eq!(
            table.targets_of(endpoint)[..],
            [fluxd("http://localhost:3030/api/flux")]
        );
        assert_eq!(
            &**table.default_target().url(),
            "http://localhost:3030/api/flux/v11/notify"
        );
        let flagged = Table::load(
            &dir.path().join("fluxrecv.yaml"),
            Some("http://fluxd:3030/api/flux"),
        )
        .table
        .unwrap();
        assert_eq!(
            flagged.targets_of(&flagged.endpoints()[0])[..],
            [fluxd("http://fluxd:3030/api/flux")]
        );
        let dirs: Vec<PathBuf> = table.directories().into_iter().collect();
        let mut want = vec![dir.path().to_path_buf(), other.path().to_path_buf()];
        want.sort();
        assert_eq!(dirs, want);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let dir = dir_with(
            "fluxRecvVersion: 1\nendpoints:\n- source: Github\n  keyPath: a.key\n- source: GitHub\n  keyPath: missing.key\n- source: GitLab\n  keyPath: empty.key\n- source: GitLab\n  keyPath: a.key\n- source: Quay\n  keyPath: a.key\n- source: Quay\n  keyPath: a.key\n  gcr:\n    audience: x\n    email: y\n",
            &[("a.key", b"0123456789abcdef\n"), ("empty.key", b"")],
        );
        let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
        assert!(loaded.table.is_none());
        let errors: Vec<String> = loaded.errors().map(|p| p.to_string()).collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].contains(
            "endpoints[0].source: unknown source \"Github\"; valid sources are GitHub, GitLab"
        ));
        assert!(errors[1].contains("endpoints[1].keyPath: cannot read key file"));
        assert!(errors[2].contains("empty.key: endpoints[2].keyPath: the key file is empty"));
        assert!(
            errors[3].contains("endpoints[4]: has the same key (and registryHost) as endpoints[3]")
        );
        assert!(
            errors[4].contains("endpoints[5].gcr: a gcr block verifies Google Pub/Sub push tokens"),
            "{}",
            errors[4]
        );
    }

    #[test]
    fn a_gcr_block_is_carried_to_the_endpoint() {
        let dir = dir_with(
            "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: a.key\n  gcr:\n    audience: https://hooks.example.com/hook/x\n    email: push@p.iam.gserviceaccount.com\n- source: GoogleContainerRegistry\n  keyPath: b.key\n",
            &[("a.key", b"0123456789abcdef-a"), ("b.key", b"0123456789abcdef-b")],
        );
        let table = Table::load(&dir.path().join("fluxrecv.yaml"), None)
            .table
            .unwrap();
        let [with, without] = table.endpoints() else {
            panic!("two endpoints")
        };
        assert_eq!(
            with.gcr,
            Some(GcrAuth {
                audience: "https://hooks.example.com/hook/x".into(),
                email: "push@p.iam.gserviceaccount.com".into(),
            })
        );
        assert!(with.verifies_sender());
        assert_eq!(without.gcr, None);
        assert!(!without.verifies_sender());
        assert!(!Source::named("GoogleContainerRegistry").verifies_sender());
    }

    #[test]
    fn gcr_fields_must_not_be_empty() {
        let dir = dir_with(
            "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: a.key\n  gcr:\n    audience: ''\n    email: ' '\n",
            &[("a.key", b"0123456789abcdef")],
        );
        let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
        assert!(loaded.table.is_none());
        let errors: Vec<String> = loaded.errors().map(|p| p.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("endpoints[0].gcr.audience: is empty"));
        assert!(errors[1].contains("endpoints[0].gcr.email: is empty"));
    }

    #[test]
    fn gcr_fields_are_required_and_checked_for_spelling() {
        for (gcr, want) in [
            ("    audience: a\n", "missing field `email`"),
            ("    email: e\n", "missing field `audience`"),
            (
                "    audience: a\n    email: e\n    emial: f\n",
                "unknown field, expected `audience` or `email`",
            ),
        ] {
            let dir = dir_with(
                &format!("fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: a.key\n  gcr:\n{gcr}"),
                &[("a.key", b"0123456789abcdef")],
            );
            let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
            assert!(loaded.table.is_none());
            let p = &loaded.problems[0];
            assert_eq!(p.field, "endpoints[0].gcr", "{p}");
            assert!(p.message.contains(want), "{p}");
        }
    }

    #[test]
    fn registry_host_changes_the_fingerprint_so_keys_can_be_shared() {
        let dir = dir_with(
            "fluxRecvVersion: 1\nendpoints:\n- source: Nexus\n  keyPath: a.key\n  registryHost: one.example.com\n- source: Nexus\n  keyPath: a.key\n  registryHost: two.example.com\n",
            &[("a.key", b"0123456789abcdef")],
        );
        let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
        assert_eq!(loaded.table.unwrap().endpoints().len(), 2);
    }

    #[test]
    fn warns_about_trailing_whitespace_and_short_keys() {
        let dir = dir_with(
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n",
            &[("a.key", b"short\n")],
        );
        let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
        let table = loaded.table.expect("warnings do not stop loading");
        // The newline is part of the key, as in the original.
        assert_eq!(table.endpoints()[0].settings.key.expose(), b"short\n");
        let warnings: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("a.key: endpoints[0].keyPath: the key ends in whitespace"));
        assert!(warnings[1].contains("only 6 bytes"));
        // Never the key itself.
        assert!(!warnings.iter().any(|w| w.contains("short\n")));
    }

    #[test]
    fn keys_and_configs_that_are_not_small_regular_files_are_errors() {
        let dir = dir_with(
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: fifo.key\n- source: GitLab\n  keyPath: zero.key\n- source: Quay\n  keyPath: big.key\n",
            &[],
        );
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo.key"))
            .status()
            .unwrap();
        assert!(made.success());
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.key")).unwrap();
        fs::File::create(dir.path().join("big.key"))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let loaded = Table::load(&dir.path().join("fluxrecv.yaml"), None);
        assert!(loaded.table.is_none());
        let errors: Vec<String> = loaded.errors().map(|p| p.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].ends_with("fifo.key: is a FIFO, not a regular file"));
        assert!(errors[1].ends_with("zero.key: is a character device, not a regular file"));
        assert!(errors[2].ends_with("big.key: is 1073741824 bytes; key files are at most 65536"));
        assert!(errors[2].contains("endpoints[2].keyPath: cannot read key file /"));

        let config = dir.path().join("fluxrecv.yaml");
        fs::remove_file(&config).unwrap();
        std::os::unix::fs::symlink("fifo.key", &config).unwrap();
        let e = read_config(&config).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].message,
            "cannot read the config file: is a FIFO, not a regular file"
        );
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let loaded = Table::load(Path::new("/nonexistent/fluxrecv.yaml"), None);
        assert!(loaded.table.is_none());
        assert!(loaded.problems[0]
            .message
            .contains("cannot read the config file"));
    }

    #[test]
    fn a_config_that_builds_no_table_still_names_its_files() {
        let root = tempfile::tempdir().unwrap();
        let cfg = root.path().join("cfg");
        fs::create_dir(&cfg).unwrap();
        let path = cfg.join("fluxrecv.yaml");
        // Builds no table (the keys are missing) but parses.
        fs::write(
            &path,
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: ../keys/a.key\n- source: GitHub\n  keyPath: /elsewhere/b.key\n",
        )
        .unwrap();
        let loaded = Table::load(&path, None);
        assert!(loaded.table.is_none());
        assert_eq!(
            loaded.files,
            BTreeSet::from([
                path.clone(),
                cfg.join("../keys/a.key"),
                PathBuf::from("/elsewhere/b.key")
            ])
        );
        fs::write(&path, "fluxRecvVersion: 1\nendpoints: [\n").unwrap();
        assert_eq!(Table::load(&path, None).files, BTreeSet::from([path]));
    }

    #[test]
    fn directory_of_a_bare_name_is_dot() {
        assert_eq!(directory_of(Path::new("fluxrecv.yaml")), Path::new("."));
        assert_eq!(
            directory_of(Path::new("/etc/fluxrecv/fluxrecv.yaml")),
            Path::new("/etc/fluxrecv")
        );
    }
}
