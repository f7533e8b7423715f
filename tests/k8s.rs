//! deploy/k8s/ cannot be applied here (no cluster), so its wiring is checked as tests/compose.rs
//! checks docker-compose.yml: the ConfigMap's sluice.toml loads and validates with the
//! Deployment's environment (through the real loader, every `SLUICE_…` variable a real key),
//! the probes and the Service reach the configured ports, the memory limit is the configured
//! one, and the Secret holds exactly the keys the environment refers to.
#![allow(clippy::result_large_err)] // figment::Jail closures return figment's error type.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;
use sluice::config::{CatalogKind, Config, ConfigError};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn dir() -> std::path::PathBuf {
    Path::new(ROOT).join("deploy/k8s")
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("deploy/k8s/{file} is not YAML: {e}"))
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

/// The manifests, by kind (each file holds one), after checking that kustomization.yaml lists
/// exactly the other files of the directory.
fn manifests() -> BTreeMap<String, Value> {
    let kustomization = yaml("kustomization.yaml");
    let mut listed: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "a resource").to_string())
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files, "kustomization.yaml lists every manifest");
    listed
        .iter()
        .map(|f| {
            let v = yaml(f);
            (str_of(&v["kind"], "kind").to_string(), v)
        })
        .collect()
}

/// A Kubernetes quantity in bytes (`1Gi`, `512Mi`, `1G`, `1073741824`).
fn bytes(quantity: &str) -> u64 {
    let split = quantity
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(quantity.len());
    let n: u64 = quantity[..split].parse().unwrap();
    n * match &quantity[split..] {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("unexpected quantity suffix {other:?} in {quantity}"),
    }
}

/// Expands `$(NAME)` with the variables defined before, as the kubelet does.
fn expand(value: &str, earlier: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(')').expect("a closed $(…)") + i;
        let name = &rest[i + 2..end];
        let (_, v) = earlier
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("$({name}) refers to no variable defined before it"));
        out.push_str(v);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The container's environment as the kubelet would set it, in order, with the Secret's keys
/// it used.
fn environment(container: &Value, secret: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let secret_name = str_of(&secret["metadata"]["name"], "the Secret's name");
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut secret_keys = Vec::new();
    for e in container["env"].as_sequence().unwrap() {
        let name = str_of(&e["name"], "an env name").to_string();
        let value = if let Some(v) = e.get("value") {
            expand(str_of(v, &name), &vars)
        } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
            assert_eq!(
                str_of(&r["name"], "secretKeyRef.name"),
                secret_name,
                "{name}"
            );
            let key = str_of(&r["key"], "secretKeyRef.key");
            secret_keys.push(key.to_string());
            str_of(&secret["stringData"][key], &format!("the Secret's {key}")).to_string()
        } else if let Some(r) = e["valueFrom"].get("resourceFieldRef") {
            assert_eq!(r["containerName"], container["name"], "{name}");
            assert_eq!(r["resource"], "limits.memory", "{name}");
            assert_eq!(r["divisor"], "1", "{name}: in bytes");
            let limit = str_of(&container["resources"]["limits"]["memory"], "limits.memory");
            bytes(limit).to_string()
        } else {
            panic!("{name}: unexpected source {e:?}");
        };
        vars.push((name, value));
    }
    (vars, secret_keys)
}

/// Loads `toml` with the `SLUICE_…` variables of `vars`, as the container would.
fn load(toml: &str, vars: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        jail.create_file("sluice.toml", toml)?;
        for (k, v) in vars.iter().filter(|(k, _)| k.starts_with("SLUICE_")) {
            jail.set_env(k, v);
        }
        out = Some(Config::load(Some(Path::new("sluice.toml"))));
        Ok(())
    });
    out.unwrap()
}

fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_manifests_are_wired_to_the_sluice_config_they_mount() {
    let m = manifests();
    let kinds: Vec<&String> = m.keys().collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Secret", "Service"]);
    let (config_map, deployment, secret, service) = (
        &m["ConfigMap"],
        &m["Deployment"],
        &m["Secret"],
        &m["Service"],
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // The ConfigMap's sluice.toml is mounted where the arguments read it.
    let volumes = pod["volumes"].as_sequence().unwrap();
    assert_eq!(volumes.len(), 1);
    let volume = &volumes[0];
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    let items = volume["configMap"]["items"].as_sequence().unwrap();
    assert_eq!(items.len(), 1);
    let key = str_of(&items[0]["key"], "the item's key");
    let toml = str_of(&config_map["data"][key], "the ConfigMap's sluice.toml");
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["name"], volume["name"]);
    assert_eq!(mounts[0]["readOnly"], true);
    let path = format!(
        "{}/{}",
        str_of(&mounts[0]["mountPath"], "mountPath"),
        str_of(&items[0]["path"], "the item's path")
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "an argument"))
        .collect();
    assert_eq!(args, ["run", "--config", path.as_str()]);

    // The environment: every SLUICE_ variable a real key (the loader rejects unknown ones),
    // the others only what a SLUICE_ value refers to and libpq's password.
    let (vars, used_secret_keys) = environment(container, secret);
    let cfg = load(toml, &vars).expect(
        "the ConfigMap's sluice.toml with the Deployment's environment is a valid configuration",
    );
    let others: Vec<&str> = (vars.iter().map(|(k, _)| k.as_str()))
        .filter(|k| !k.starts_with("SLUICE_"))
        .collect();
    assert_eq!(others, ["KAFKA_SASL_PASSWORD", "PGPASSWORD"]);
    // The file alone is valid too (the secrets then come from nowhere, the limit unset).
    let alone = load(toml, &[]).expect("the ConfigMap's sluice.toml alone is valid");
    assert_eq!(alone.memory.limit_bytes, None);

    // The Secret holds exactly what the environment takes from it, and it reaches the keys.
    let mut secret_keys: Vec<String> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| str_of(k, "a Secret key").to_string())
        .collect();
    secret_keys.sort();
    let mut used = used_secret_keys.clone();
    used.sort();
    assert_eq!(secret_keys, used);
    let secret_value = |k: &str| str_of(&secret["stringData"][k], k).to_string();
    assert_eq!(
        cfg.lake.s3.secret_access_key.as_ref().map(|s| s.expose()),
        Some(secret_value("s3-secret-access-key").as_str())
    );
    let want_properties: BTreeMap<String, String> = [
        ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
        ("sasl.password", secret_value("kafka-sasl-password")),
        ("sasl.username", "sluice".to_string()),
        ("security.protocol", "SASL_SSL".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(cfg.kafka.properties, want_properties);
    let pgpassword = vars.iter().find(|(k, _)| k == "PGPASSWORD").unwrap();
    assert_eq!(pgpassword.1, secret_value("pg-password"));
    assert!(
        !cfg.lake.catalog.contains("password"),
        "the password belongs in PGPASSWORD"
    );
    assert!(!toml.contains(&secret_value("kafka-sasl-password")));
    assert!(!toml.contains(&secret_value("s3-secret-access-key")));

    // The memory limit is the configured one, and what the pod is guaranteed.
    let limits = &container["resources"]["limits"];
    let requests = &container["resources"]["requests"];
    let limit = bytes(str_of(&limits["memory"], "limits.memory"));
    assert_eq!(limit, 1 << 30);
    assert_eq!(cfg.memory.limit_bytes, Some(limit));
    assert_eq!(requests["memory"], limits["memory"]);
    // ... and sluice's split of it works (the limit lowered the Arrow cap to its share).
    assert!(cfg.memory_split().is_some());
    assert!(cfg.flush.memory_cap_bytes < Config::default().flush.memory_cap_bytes);

    // The state is in the lake, not on the pod: why it is a Deployment.
    assert_eq!(cfg.lake.catalog_kind, CatalogKind::Postgres);
    assert!(cfg.lake.data_path.starts_with("s3://"));

    // The probes and the Service reach the configured ports, bound on the pod's address.
    assert!(cfg.live.address.starts_with("0.0.0.0:"));
    assert!(cfg.metrics.address.starts_with("0.0.0.0:"));
    let container_port = |name: &str| -> u64 {
        let p = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"));
        p["containerPort"].as_u64().unwrap()
    };
    assert_eq!(container_port("metrics"), port_of(&cfg.metrics.address));
    assert_eq!(container_port("flight"), port_of(&cfg.live.address));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            container_port(str_of(&get["port"], probe)),
            port_of(&cfg.metrics.address),
            "{probe}"
        );
    }
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(&service["spec"]["selector"], labels);
    let service_ports = service["spec"]["ports"].as_sequence().unwrap();
    assert_eq!(service_ports.len(), 2);
    for (name, address) in [
        ("flight", &cfg.live.address),
        ("metrics", &cfg.metrics.address),
    ] {
        let p = service_ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("the Service has no port {name}"));
        assert_eq!(p["port"].as_u64(), Some(port_of(address)), "{name}");
        assert_eq!(
            container_port(str_of(&p["targetPort"], name)),
            port_of(address)
        );
    }
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"],
        port_of(&cfg.metrics.address).to_string().as_str()
    );
}

#[test]
fn a_dotted_property_cannot_be_an_environment_key_so_the_manifest_passes_a_table() {
    // Why the Deployment passes the SASL password as `SLUICE_KAFKA__PROPERTIES={…}`: in a
    // variable's name `.` nests like `__`, so `sasl.password` would become a table.
    let toml = "[kafka]\ntopics = [\"events\"]\n[kafka.properties]\n\"sasl.username\" = \"u\"\n";
    let dotted = [(
        "SLUICE_KAFKA__PROPERTIES__SASL.PASSWORD".to_string(),
        "pw".to_string(),
    )];
    assert_eq!(
        load(toml, &dotted).unwrap_err().to_string(),
        "configuration error: invalid type: found map, expected a string for key \
         \"KAFKA.PROPERTIES.SASL\" in `SLUICE_` environment variable(s)"
    );
    let table = [(
        "SLUICE_KAFKA__PROPERTIES".to_string(),
        r#"{"sasl.password"="p\"w"}"#.to_string(),
    )];
    let cfg = load(toml, &table).unwrap();
    assert_eq!(
        cfg.kafka.properties,
        [("sasl.password", "p\"w"), ("sasl.username", "u")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    );
}
