//! `flux-recv endpoints`: every endpoint's hook URL, to paste into the
//! provider, as aligned text or as JSON for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{EndpointsArgs, Output};
use crate::table::Table;

/// One endpoint, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// 1-based position in the config's `endpoints:` list (what `send
    /// --endpoint` takes).
    pub position: usize,
    /// The source, spelt as in the config.
    pub source: &'static str,
    /// The key file, resolved against the config's directory.
    pub key_path: PathBuf,
    /// The config's `registryHost`, if any (it is part of the fingerprint).
    pub registry_host: Option<String>,
    /// sha256(key ++ registryHost), hex.
    pub fingerprint: String,
    /// `/hook/<fingerprint>`.
    pub path: String,
    /// The base URL followed by the path; the path alone without one.
    pub url: String,
    /// Whether requests must be signed (or carry a token); if not, the URL
    /// is the only protection.
    pub verifies_sender: bool,
    /// Where its changes go: each target as the config names it (a fluxd
    /// API's base URL). `apis` in JSON, as before there were other kinds.
    pub apis: Vec<String>,
    /// Which changes it sends: `everything`, or its filter's globs.
    pub filter: String,
}

/// The rows for `table`, with URLs under `base_url` (no trailing `/`).
pub fn rows(table: &Table, base_url: Option<&str>) -> Vec<Row> {
    table
        .endpoints()
        .iter()
        .map(|e| {
            let path = e.url_path();
            Row {
                position: e.position,
                source: e.source.name(),
                key_path: e.key_path.clone(),
                registry_host: e.settings.registry_host.clone(),
                fingerprint: e.fingerprint.clone(),
                url: format!("{}{path}", base_url.unwrap_or("")),
                path,
                verifies_sender: e.verifies_sender(),
                apis: table.targets_of(e).iter().map(|t| t.to_string()).collect(),
                filter: e.filter.to_string(),
            }
        })
        .collect()
}

/// Aligned columns with a header line.
pub fn text(rows: &[Row]) -> String {
    let header = ["#", "SOURCE", "KEY", "FINGERPRINT", "URL", "API", "FILTER"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.position.to_string(),
                r.source.to_string(),
                r.key_path.display().to_string(),
                r.fingerprint.clone(),
                r.url.clone(),
                r.apis.join(" "),
                r.filter.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(String::from);
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Run `flux-recv endpoints`.
pub fn run(args: EndpointsArgs) -> anyhow::Result<ExitCode> {
    let table = super::load(&args.config, args.fluxd.api.as_deref())?;
    let rows = rows(&table, args.base_url.as_deref());
    match args.output {
        Output::Text => print!("{}", text(&rows)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), "0123456789abcdef-a").unwrap();
        std::fs::write(
            dir.path().join("fluxrecv.yaml"),
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n- source: Nexus\n  keyPath: a.key\n  registryHost: r.example.com\n  api: [http://a:3030/api/flux, http://b:3030/api/flux]\n  filter: {images: [\"r.example.com/team/*\"]}\n",
        )
        .unwrap();
        let table = Table::load(
            &dir.path().join("fluxrecv.yaml"),
            Some("http://f:1/api/flux"),
        )
        .table
        .unwrap();
        let rows = rows(&table, Some("https://hooks.example.com"));
        let fp = crate::endpoint::fingerprint(b"0123456789abcdef-a", Some("r.example.com"));
        assert_eq!(rows[1].position, 2);
        assert_eq!(rows[1].source, "Nexus");
        assert_eq!(rows[1].registry_host.as_deref(), Some("r.example.com"));
        assert_eq!(rows[1].url, format!("https://hooks.example.com/hook/{fp}"));
        assert_eq!(rows[0].apis, ["http://f:1/api/flux"]);
        assert_eq!(rows[0].filter, "everything");
        assert_eq!(
            rows[1].apis,
            ["http://a:3030/api/flux", "http://b:3030/api/flux"]
        );
        assert_eq!(rows[1].filter, "images r.example.com/team/*");
        let text = text(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("#  SOURCE  KEY"), "{}", lines[0]);
        assert!(lines[2].starts_with("2  Nexus   "), "{}", lines[2]);
        assert!(lines[2].ends_with(
            "http://a:3030/api/flux http://b:3030/api/flux  images r.example.com/team/*"
        ));
        // Columns line up.
        let col = lines[0].find("FINGERPRINT").unwrap();
        assert_eq!(lines[2].find(&fp), Some(col));
    }
}
