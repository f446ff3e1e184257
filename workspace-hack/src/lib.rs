//! No code: see this crate's Cargo.toml. Its dependencies switch on, for payhost's own build, the
//! features the tests' dependencies switch on, so the demo's build and the tests' share one payhost.
//! The test below asks cargo for both builds' unit graphs and fails, naming what differs, when a
//! dependency change parts them again.

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use std::collections::{BTreeSet, HashMap};
    use std::path::Path;
    use std::process::Command;

    /// What makes cargo build a unit once and reuse it: the package, the target, how it is built,
    /// its features, profile and platform. A unit's identity also holds its dependencies'. The
    /// profile's name is left out, as cargo leaves it out: `bench` builds what `release` built.
    fn own_key(unit: &Value) -> String {
        let mut profile = unit["profile"].clone();
        if let Some(p) = profile.as_object_mut() {
            p.remove("name");
        }
        format!(
            "{} {} {} {} {} {}",
            unit["pkg_id"],
            unit["target"]["name"],
            unit["target"]["kind"],
            unit["mode"],
            unit["features"],
            serde_json::to_string(&(&profile, &unit["platform"])).unwrap()
        )
    }

    struct Graph {
        units: Vec<Value>,
        identity: Vec<String>,
    }

    impl Graph {
        fn of(args: &[&str]) -> Graph {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = Command::new(cargo)
                .current_dir(root)
                .args(args)
                .args([
                    "--locked",
                    "--offline",
                    "--unit-graph",
                    "-Z",
                    "unstable-options",
                ])
                // `--unit-graph` is unstable: the stable toolchain shows it with RUSTC_BOOTSTRAP.
                .env("RUSTC_BOOTSTRAP", "1")
                .output()
                .expect("cargo runs");
            assert!(
                out.status.success(),
                "cargo {args:?} --unit-graph failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let graph: Value = serde_json::from_slice(&out.stdout).expect("a unit graph");
            let units = graph["units"].as_array().expect("units").clone();
            let mut identity: Vec<Option<String>> = vec![None; units.len()];
            fn ident(i: usize, units: &[Value], memo: &mut Vec<Option<String>>) -> String {
                if let Some(s) = &memo[i] {
                    return s.clone();
                }
                let mut deps: Vec<String> = units[i]["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| ident(d["index"].as_u64().unwrap() as usize, units, memo))
                    .collect();
                deps.sort();
                let s = format!("{}<{}>", own_key(&units[i]), deps.join(","));
                memo[i] = Some(s.clone());
                s
            }
            let identity = (0..units.len())
                .map(|i| ident(i, &units, &mut identity))
                .collect();
            Graph { units, identity }
        }

        fn payhost_lib(&self) -> usize {
            self.units
                .iter()
                .position(|u| {
                    u["target"]["name"] == "payhost"
                        && u["mode"] == "build"
                        && u["target"]["kind"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|k| k == "lib")
                })
                .expect("payhost's library in the graph")
        }
    }

    /// The units under payhost's library in `other` that `base` does not have, by their own key:
    /// the packages whose features differ.
    fn parted(base: &Graph, other: &Graph) -> BTreeSet<String> {
        let known: HashMap<&str, ()> = base.identity.iter().map(|s| (s.as_str(), ())).collect();
        let own: BTreeSet<String> = base.units.iter().map(own_key).collect();
        let mut out = BTreeSet::new();
        let mut stack = vec![other.payhost_lib()];
        let mut seen = BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) || known.contains_key(other.identity[i].as_str()) {
                continue;
            }
            let unit = &other.units[i];
            if !own.contains(&own_key(unit)) {
                out.insert(format!(
                    "{} ({}) with features {}",
                    unit["pkg_id"].as_str().unwrap().rsplit('#').next().unwrap(),
                    unit["target"]["name"].as_str().unwrap(),
                    unit["features"]
                ));
            }
            for d in unit["dependencies"].as_array().unwrap() {
                stack.push(d["index"].as_u64().unwrap() as usize);
            }
        }
        out
    }

    #[test]
    fn the_demo_the_tests_and_the_benchmarks_share_one_build_of_payhost() {
        // What scripts/demo builds, what scripts/test's nextest builds, and the load benchmark.
        let demo = Graph::of(&["build", "--release", "-p", "payhost", "--bin", "payhost"]);
        let tests = Graph::of(&["test", "--release", "--workspace", "--no-run"]);
        let bench = Graph::of(&["bench", "-p", "conformance", "--bench", "load", "--no-run"]);
        for (name, graph) in [
            ("cargo nextest (the tests)", &tests),
            ("cargo bench", &bench),
        ] {
            let differ = parted(&demo, graph);
            assert!(
                differ.is_empty(),
                "{name} builds payhost apart from `cargo build -p payhost` (the demo): these \
                 dependencies have other features there; switch them on in workspace-hack/Cargo.toml:\n{}",
                differ.into_iter().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
