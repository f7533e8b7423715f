//! docker-compose.yml cannot be started here (no container engine), so its wiring is checked:
//! every variable given to sluice is a real configuration key, and the service names, ports,
//! credentials, bucket and topic agree with the sluice configuration the file mounts.
#![allow(clippy::result_large_err)] // figment::Jail closures return figment's error type.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;
use sluice::config::{CatalogKind, Config};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    v.apply_merge().expect("merge keys resolve");
    v
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name} is missing"))
}

fn env(svc: &Value) -> BTreeMap<String, String> {
    svc["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn condition(svc: &Value, on: &str) -> String {
    svc["depends_on"][on]["condition"]
        .as_str()
        .unwrap_or_else(|| panic!("no depends_on condition on {on}"))
        .to_string()
}

/// The value after `flag` in a command line.
fn arg(cmd: &[String], flag: &str) -> String {
    let i = cmd
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing in {cmd:?}"));
    cmd[i + 1].clone()
}

/// Loads deploy/sluice.toml with the sluice service's SLUICE_ variables, as the container would.
fn sluice_config(vars: &BTreeMap<String, String>) -> Config {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        for (k, v) in vars.iter().filter(|(k, _)| k.starts_with("SLUICE_")) {
            jail.set_env(k, v);
        }
        out = Some(Config::load(Some(
            &Path::new(ROOT).join("deploy/sluice.toml"),
        )));
        Ok(())
    });
    out.unwrap()
        .expect("deploy/sluice.toml with the compose environment is a valid configuration")
}

fn conninfo(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_compose_stack_is_wired_to_the_sluice_config_it_mounts() {
    let c = compose();
    let sluice = service(&c, "sluice");
    let vars = env(sluice);
    let cfg = sluice_config(&vars);

    // The config file is mounted where the image's default command reads it.
    assert!(
        strings(&sluice["volumes"])
            .contains(&"./deploy/sluice.toml:/etc/sluice/sluice.toml:ro".to_string())
    );
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"CMD ["run", "--config", "/etc/sluice/sluice.toml"]"#));
    assert!(dockerfile.contains("--features bundled"));
    assert!(dockerfile.contains("SLUICE_LAKE__EXTENSION_DIRECTORY=/opt/sluice/extensions"));
    for ext in ["ducklake", "httpfs", "postgres_scanner"] {
        assert!(
            dockerfile.contains(ext),
            "the image lacks the {ext} extension"
        );
    }
    // sluice splits the container's memory limit between its parts.
    assert_eq!(sluice["mem_limit"].as_u64(), Some(1 << 30));
    assert_eq!(cfg.memory.limit_bytes, Some(1 << 30));
    // Besides SLUICE_ keys (checked by loading them), only the catalog password is passed.
    let others: Vec<&String> = vars.keys().filter(|k| !k.starts_with("SLUICE_")).collect();
    assert_eq!(others, vec!["PGPASSWORD"]);

    // Kafka: sluice's brokers are what the broker advertises; the topic is created by kafka-init.
    let kafka_env = env(service(&c, "kafka"));
    assert_eq!(cfg.kafka.brokers, "kafka:9092");
    assert!(kafka_env["KAFKA_ADVERTISED_LISTENERS"].contains("PLAINTEXT://kafka:9092"));
    let init = strings(&service(&c, "kafka-init")["command"]);
    assert_eq!(arg(&init, "--bootstrap-server"), cfg.kafka.brokers);
    assert_eq!(cfg.kafka.topics, vec![arg(&init, "--topic")]);

    // PostgreSQL: the catalog names the service, its user, database and password.
    let pg_env = env(service(&c, "postgres"));
    assert_eq!(cfg.lake.catalog_kind, CatalogKind::Postgres);
    let ci = conninfo(&cfg.lake.catalog);
    assert_eq!(ci["host"], "postgres");
    assert_eq!(ci["port"], "5432");
    assert_eq!(ci["user"], pg_env["POSTGRES_USER"]);
    assert_eq!(ci["dbname"], pg_env["POSTGRES_DB"]);
    assert!(
        !ci.contains_key("password"),
        "the password belongs in PGPASSWORD"
    );
    assert_eq!(vars["PGPASSWORD"], pg_env["POSTGRES_PASSWORD"]);

    // MinIO: endpoint, bucket, and the user minio-init creates with its secret.
    let minio = service(&c, "minio");
    assert!(strings(&minio["ports"]).contains(&"9000:9000".to_string()));
    assert_eq!(cfg.lake.s3.endpoint.as_deref(), Some("http://minio:9000"));
    let init_env = env(service(&c, "minio-init"));
    assert_eq!(
        cfg.lake.s3.access_key_id.as_deref(),
        Some(init_env["SLUICE_S3_ACCESS_KEY"].as_str())
    );
    assert_eq!(
        cfg.lake.s3.secret_access_key.as_ref().map(|s| s.expose()),
        Some(init_env["SLUICE_S3_SECRET_KEY"].as_str())
    );
    assert_eq!(init_env["MINIO_ROOT_USER"], env(minio)["MINIO_ROOT_USER"]);
    assert_eq!(
        init_env["MINIO_ROOT_PASSWORD"],
        env(minio)["MINIO_ROOT_PASSWORD"]
    );
    let bucket = cfg
        .lake
        .data_path
        .strip_prefix("s3://")
        .and_then(|p| p.split('/').next())
        .unwrap();
    let init_sh = std::fs::read_to_string(Path::new(ROOT).join("minio/init.sh")).unwrap();
    assert!(init_sh.contains(&format!("mc mb --ignore-existing local/{bucket}")));
    assert!(
        strings(&service(&c, "minio-init")["volumes"]).contains(&"./minio:/minio:ro".to_string())
    );
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("minio/policy.json")).unwrap(),
    )
    .unwrap();
    let resources = policy["Statement"].to_string();
    assert!(resources.contains(&format!("arn:aws:s3:::{bucket}/*")));

    // Published ports and the health check follow the configured listen addresses.
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_string();
    let ports = strings(&sluice["ports"]);
    for p in [port(&cfg.live.address), port(&cfg.metrics.address)] {
        assert!(
            ports.contains(&format!("{p}:{p}")),
            "port {p} is not published: {ports:?}"
        );
    }
    assert!(
        cfg.live.address.starts_with("0.0.0.0:") && cfg.metrics.address.starts_with("0.0.0.0:")
    );
    let hc = strings(&sluice["healthcheck"]["test"]);
    assert_eq!(
        hc.last().unwrap(),
        &format!("http://localhost:{}/healthz", port(&cfg.metrics.address))
    );

    // Start order.
    assert_eq!(condition(sluice, "kafka"), "service_healthy");
    assert_eq!(
        condition(sluice, "kafka-init"),
        "service_completed_successfully"
    );
    assert_eq!(
        condition(sluice, "minio-init"),
        "service_completed_successfully"
    );
    assert_eq!(condition(sluice, "postgres"), "service_healthy");
    assert_eq!(
        condition(service(&c, "minio-init"), "minio"),
        "service_healthy"
    );
    assert_eq!(
        condition(service(&c, "kafka-init"), "kafka"),
        "service_healthy"
    );

    // The producer writes where sluice reads, into as many partitions as the topic has.
    let producer = service(&c, "producer");
    let cmd = strings(&producer["command"]);
    assert_eq!(arg(&cmd, "--brokers"), cfg.kafka.brokers);
    assert_eq!(vec![arg(&cmd, "--topic")], cfg.kafka.topics);
    assert_eq!(arg(&cmd, "--partitions"), arg(&init, "--partitions"));
    assert_eq!(strings(&producer["entrypoint"]), vec!["sluice-loadgen"]);
    assert_eq!(condition(producer, "sluice"), "service_healthy");
}

#[test]
fn an_unknown_sluice_variable_in_compose_would_be_caught() {
    // The check above relies on unknown keys being rejected; prove that it is so.
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        jail.set_env("SLUICE_LAKE__S3__SECRET_KEY", "x");
        out = Some(Config::load(Some(
            &Path::new(ROOT).join("deploy/sluice.toml"),
        )));
        Ok(())
    });
    let err = out.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("unknown field") && err.contains("secret_key"),
        "{err}"
    );
}
