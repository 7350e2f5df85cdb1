//! Every YAML file under container/ parses, and every kustomization names
//! files that exist, and nothing remote.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::{at, read_docs, str_list, yaml_files};

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files();
    // Three Components, the shared network objects, two examples and the
    // Helm route, with their parts.
    assert!(files.len() >= 15, "{:#?}", files.keys());
    for (path, docs) in &files {
        assert!(!docs.is_empty(), "{} is empty", path.display());
    }
}

/// Keys are made by the operator (`flux-recv keygen --out …`), never
/// shipped; `../flux` in the examples stands for the operator's own Flux.
fn shipped(entry: &str) -> bool {
    !entry.ends_with(".key") && entry != "../flux"
}

#[test]
fn kustomizations_name_files_that_exist_and_nothing_remote() {
    let files = yaml_files();
    let kustomizations: Vec<(&PathBuf, &Value)> = files
        .iter()
        .filter(|(p, _)| p.file_name().unwrap() == "kustomization.yaml")
        .map(|(p, docs)| (p, &docs[0]))
        .collect();
    // flux-recv, two-secrets, podmonitor and monitoring (Components);
    // network, the two examples and helm.
    assert_eq!(kustomizations.len(), 8, "{kustomizations:#?}");
    let kind_of = |dir: &Path| -> String {
        let doc = &read_docs(&dir.join("kustomization.yaml"))[0];
        doc["kind"].as_str().unwrap().to_string()
    };
    for (path, k) in kustomizations {
        let dir = path.parent().unwrap();
        let here = path.display();
        match k["kind"].as_str() {
            Some("Kustomization") => {
                assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1", "{here}")
            }
            Some("Component") => {
                assert_eq!(
                    k["apiVersion"], "kustomize.config.k8s.io/v1alpha1",
                    "{here}"
                )
            }
            other => panic!("{here}: kind {other:?}"),
        }
        let mut entries = str_list(&k["resources"]);
        let generators = ["secretGenerator", "configMapGenerator"]
            .iter()
            .flat_map(|g| k[*g].as_sequence().into_iter().flatten());
        for generator in generators {
            for file in str_list(&generator["files"]) {
                // `name=path` names the key in the Secret differently.
                entries.push(file.rsplit('=').next().unwrap().to_string());
            }
            // Flux's namespace, whatever the kubectl context's is.
            assert_eq!(generator["namespace"], "flux", "{here}");
        }
        for patch in k["patches"].as_sequence().into_iter().flatten() {
            entries.push(patch["path"].as_str().unwrap().to_string());
        }
        // Never someone else's manifests fetched at apply time: applying
        // Flux's example Deployment would replace the operator's fluxd.
        for entry in &entries {
            assert!(
                !entry.contains("://") && !entry.starts_with("github.com/"),
                "{here} names remote {entry}"
            );
        }
        for entry in entries.iter().filter(|e| shipped(e)) {
            assert!(
                dir.join(entry).exists(),
                "{here} names {entry}, which does not exist"
            );
        }
        for component in str_list(&k["components"]) {
            assert_eq!(
                kind_of(&dir.join(&component)),
                "Component",
                "{here}: {component}"
            );
        }
        // Each generator's own options: a top-level generatorOptions would
        // change the other generators of a kustomization this is copied into.
        assert!(
            k["generatorOptions"].is_null(),
            "{here}: set options on each generator, not generatorOptions"
        );
        for generator in k["secretGenerator"].as_sequence().into_iter().flatten() {
            assert_eq!(
                at(generator, &["options", "disableNameSuffixHash"]),
                &Value::Bool(true),
                "{here}: the Secrets must keep their names for hot reload"
            );
        }
        for generator in k["configMapGenerator"].as_sequence().into_iter().flatten() {
            assert_eq!(
                at(generator, &["options", "disableNameSuffixHash"]),
                &Value::Bool(true),
                "{here}: a dashboard's ConfigMap keeps its name, so that an update replaces it"
            );
        }
    }
}
