//! Loading and validating the whole configuration (figment layering, key names in errors).
#![allow(clippy::result_large_err)] // figment::Jail's closures return figment's error type.

use super::*;
use figment::Jail;

pub(crate) fn load_in_jail(toml: &str) -> Result<Config, ConfigError> {
    let mut out = None;
    Jail::expect_with(|jail| {
        jail.create_file("sluice.toml", toml)?;
        out = Some(Config::load(Some(Path::new("sluice.toml"))));
        Ok(())
    });
    out.unwrap()
}

#[test]
fn file_then_env_layering() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "sluice.toml",
            r#"
            [kafka]
            brokers = "k1:9092"
            topics = ["events", "Page-Views"]
            [kafka.properties]
            "security.protocol" = "SASL_SSL"
            [flush]
            max_rows = 500
            "#,
        )?;
        jail.set_env("SLUICE_KAFKA__BROKERS", "k2:9092");
        jail.set_env("SLUICE_FLUSH__RETRY__ATTEMPTS", "3");
        let cfg = Config::load(Some(Path::new("sluice.toml"))).unwrap();
        assert_eq!(cfg.kafka.brokers, "k2:9092");
        assert_eq!(cfg.kafka.topics, vec!["events", "Page-Views"]);
        assert_eq!(cfg.flush.max_rows, 500);
        assert_eq!(cfg.flush.retry.attempts, 3);
        assert_eq!(cfg.flush.max_bytes, 128 * 1024 * 1024);
        assert_eq!(
            cfg.kafka
                .properties
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(cfg.tables.table_for("Page-Views"), "page_views");
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_is_named() {
    let err = load_in_jail("[kafka]\ntopics=[\"a\"]\nbrokerz = \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown field: found `brokerz`"), "{text}");
    assert!(text.contains("kafka.brokerz"), "{text}");
}

#[test]
fn unknown_section_is_named() {
    let err = load_in_jail("[kafak]\ntopics=[\"a\"]\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field: found `kafak`"),
        "{err}"
    );
}

#[test]
fn unknown_env_key_is_named() {
    Jail::expect_with(|jail| {
        jail.set_env("SLUICE_KAFKA__TOPICS", "[\"a\"]");
        jail.set_env("SLUICE_FLUSH__MAX_BYTEZ", "5");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("unknown field: found `max_bytez`"), "{err}");
        assert!(err.contains("SLUICE_"), "{err}");
        Ok(())
    });
}

#[test]
fn bad_value_type_is_named() {
    let err = load_in_jail("[kafka]\ntopics=[\"a\"]\n[flush]\nmax_rows = \"many\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("flush.max_rows"), "{text}");
    assert!(
        text.contains("invalid type: found string \"many\""),
        "{text}"
    );
}

#[test]
fn bad_enum_value_is_named() {
    let err = load_in_jail("[kafka]\ntopics=[\"a\"]\nstart_from = \"middle\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("kafka.start_from"), "{text}");
    assert!(text.contains("unknown variant: found `middle`"), "{text}");
}

#[test]
fn validation_names_the_key() {
    let cases = [
        (
            "[kafka]\ntopics=[]\n",
            "`kafka.topics` must list at least one topic",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[flush]\nmax_bytes=0\n",
            "`flush.max_bytes` must be greater than 0",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[kafka.properties]\n\"enable.auto.commit\"=\"true\"\n",
            "`kafka.properties.enable.auto.commit` is set by sluice",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[flush.retry]\nattempts=0\n",
            "`flush.retry.attempts` must be at least 1",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables.map]\na=\"sluice_x\"\n",
            "`tables.map.a` must not start with `sluice_`",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[log]\nlevel=\"[[\"\n",
            "`log.level` is not a valid filter",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables.options.ev]\npartition_by=[\"day(ts)\", \"week(ts)\"]\n",
            "`tables.options.ev.partition_by[1]` \"week(ts)\" is not a partition expression: use a column name, year(col), month(col), day(col), hour(col) or bucket(N, col)",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables.defaults]\nsorted_by=[\"ts sideways\"]\n",
            "`tables.defaults.sorted_by[0]` \"ts sideways\" is not a sort key",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables.options.ev]\nparquet_compression=\"zip\"\n",
            "`tables.options.ev.parquet_compression` \"zip\" is not one of uncompressed, snappy, gzip, zstd, brotli, lz4, lz4_raw",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables.defaults]\ntarget_file_size=\"big\"\n",
            "`tables.defaults.target_file_size` \"big\" is not a size",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables.defaults]\nparquet_compression=\"zstd\"\n[tables.options.ev]\nparquet_compression=\"snappy\"\nparquet_compression_level=3\n",
            "`tables.options.ev.parquet_compression_level` is only supported with parquet_compression = \"zstd\"",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[tables]\nschema_evolution=\"loose\"\n",
            "unknown variant: found `loose`, expected ``evolve` or `strict`` for key \"default.tables.schema_evolution\"",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\non_offset_gap=\"skip\"\n",
            "unknown variant: found `skip`, expected `one of `fail`, `earliest`, `latest``",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[maintenance]\ninterval=\"often\"\n",
            "`maintenance.interval` is not a duration like \"90s\", \"10m\", \"1h\" or \"7d\" (\"often\": ",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[maintenance]\ninterval=\"1h\"\nlease=\"30m\"\n",
            "`maintenance.lease` (30m) must exceed maintenance.interval (1h): the holder renews it once per pass",
        ),
        (
            "[kafka]\ntopics=[\"a\"]\n[maintenance]\ninterval=\"100ms\"\n",
            "`maintenance.interval` must be at least 1s",
        ),
    ];
    for (toml, want) in cases {
        let err = load_in_jail(toml).unwrap_err().to_string();
        assert!(err.contains(want), "for {toml:?}: got {err}, want {want}");
    }
}

#[test]
fn the_memory_budget_reserves_live_retention_and_prefetch() {
    let mut cfg = Config::default();
    cfg.kafka.topics = vec!["a".into(), "b".into()];
    const MIB: u64 = 1024 * 1024;
    // Defaults: 1024 MiB budget; 256 MiB live per topic; 64 MiB queue + 50 MiB fetch.
    assert_eq!(
        cfg.memory_budget(),
        MemoryBudget {
            total: 1024 * MIB,
            live: 512 * MIB,
            prefetch: 64 * MIB + 52_428_800,
            pending: 1024 * MIB - 512 * MIB - 64 * MIB - 52_428_800,
        }
    );
    cfg.live.enabled = false;
    assert_eq!(cfg.memory_budget().live, 0);
    cfg.live.enabled = true;
    cfg.kafka.topics.extend(["c".into(), "d".into()]);
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "configuration error: `flush.memory_cap_bytes` (1024 MiB) leaves nothing for pending \
         data: the live ring reserves 1024 MiB (live.retention_bytes × 4 topics) and \
         librdkafka's prefetch 114 MiB (kafka.queued_max_messages_kbytes + \
         kafka.fetch_max_bytes); raise it or lower those"
    );
}

#[test]
fn s3_settings_fall_back_to_the_aws_environment() {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("env-key".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_string()),
        "AWS_DEFAULT_REGION" => Some("eu-west-1".to_string()),
        "AWS_ENDPOINT_URL" => Some("http://minio:9000/".to_string()),
        _ => None,
    };
    let r = S3Config::default().resolve(env);
    assert_eq!(
        r,
        S3Resolved {
            endpoint: Some("minio:9000".into()),
            region: Some("eu-west-1".into()),
            url_style: UrlStyle::Path,
            use_ssl: false,
            access_key_id: Some("env-key".into()),
            secret_access_key: Some(Secret::new("env-secret")),
            session_token: None,
        }
    );
    // Configured values win; no endpoint means AWS: vhost style over HTTPS.
    let cfg = S3Config {
        region: Some("us-east-2".into()),
        access_key_id: Some("cfg-key".into()),
        ..Default::default()
    };
    let r = cfg.resolve(|_| None);
    assert_eq!(
        (r.endpoint, r.region.as_deref(), r.url_style, r.use_ssl),
        (None, Some("us-east-2"), UrlStyle::Vhost, true)
    );
    assert_eq!(r.access_key_id.as_deref(), Some("cfg-key"));
    assert_eq!(format!("{:?}", Secret::new("x")), "\"***\"");
}

#[test]
fn missing_file_is_named() {
    let err = Config::load(Some(Path::new("/nonexistent/sluice.toml"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration error: config file /nonexistent/sluice.toml does not exist"
    );
}

#[test]
fn the_example_config_is_valid_and_matches_the_defaults() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sluice.example.toml"
    ));
    let mut out = None;
    Jail::expect_with(|jail| {
        // The one key without a default (commented out there with an example).
        jail.set_env("SLUICE_KAFKA__TOPICS", r#"["events"]"#);
        out = Some(Config::load(Some(path)));
        Ok(())
    });
    let cfg = out.unwrap().unwrap();
    let mut want = Config::default();
    want.kafka.topics = vec!["events".into()];
    assert_eq!(cfg, want);
}

#[test]
fn table_names_follow_the_map_then_the_template() {
    let mut t = TablesConfig::default();
    assert_eq!(t.table_for("Web.Events"), "web_events");
    t.name_template = "raw_{topic}_v1".into();
    t.map.insert("orders".into(), "Orders Table".into());
    assert_eq!(t.table_for("Web.Events"), "raw_web_events_v1");
    assert_eq!(t.table_for("orders"), "Orders Table");
    t.name_template = "{topic}".into();
    // Never one of sluice's own tables.
    assert_eq!(t.table_for("sluice_offsets"), "t_sluice_offsets");
    assert!(is_topic_pattern("^events_.*") && !is_topic_pattern("events"));
}

#[test]
fn topics_whose_derived_tables_collide_are_rejected_unless_the_map_separates_them() {
    let err = load_in_jail("[kafka]\ntopics = [\"a.b\", \"c\", \"a_b\"]\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "configuration error: `kafka.topics` names two topics that collide: topics \"a.b\" and \"a_b\" both go to table \"a_b\" \
         (derived by tables.name_template \"{topic}\"); map one of them to another table under \
         [tables.map]"
    );
    // One of them mapped to the other's derived name is still an accident.
    let err = load_in_jail("[kafka]\ntopics = [\"a.b\", \"x\"]\n[tables.map]\n\"x\" = \"a_b\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("topics \"a.b\" and \"x\" both go to table \"a_b\""),
        "{err}"
    );
    // Separated by the map, or both mapped to one table on purpose: accepted.
    load_in_jail("[kafka]\ntopics = [\"a.b\", \"a_b\"]\n[tables.map]\n\"a.b\" = \"ab_dotted\"\n")
        .unwrap();
    load_in_jail(
        "[kafka]\ntopics = [\"a.b\", \"a_b\"]\n[tables.map]\n\"a.b\" = \"ab\"\n\"a_b\" = \"ab\"\n",
    )
    .unwrap();
    // Patterns are checked when their topics are first assigned.
    load_in_jail("[kafka]\ntopics = [\"^a.*\", \"a_b\"]\n").unwrap();
}

#[test]
fn metrics_credentials_come_together() {
    let err = load_in_jail("[kafka]\ntopics = [\"t\"]\n[metrics]\nusername = \"p\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "configuration error: `metrics.username` and metrics.password are set together (HTTP basic authentication)"
    );
    let err = load_in_jail(
        "[kafka]\ntopics = [\"t\"]\n[metrics]\nusername = \"a:b\"\npassword = \"x\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("the username has no ':'"), "{err}");
    let cfg = load_in_jail(
        "[kafka]\ntopics = [\"t\"]\n[metrics]\nusername = \"p\"\npassword = \"s3cret\"\n",
    )
    .unwrap();
    assert!(!format!("{cfg:?}").contains("s3cret"));
}

#[test]
fn table_names_from_topics() {
    assert_eq!(table_name_from_topic("events"), "events");
    assert_eq!(table_name_from_topic("Web.Events-v2"), "web_events_v2");
    assert_eq!(table_name_from_topic("2024events"), "t_2024events");
    assert_eq!(table_name_from_topic("ü"), "_");
}

#[test]
fn a_lake_at_the_old_default_catalog_is_not_silently_replaced_by_a_new_one() {
    Jail::expect_with(|jail| {
        jail.create_file("sluice.toml", "[kafka]\ntopics = [\"a\"]\n")?;
        jail.create_file("sluice.ducklake", "")?;
        let err = Config::load(Some(Path::new("sluice.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "configuration error: `lake.catalog` is the default \"sluice.sqlite\", which does not exist, but \"sluice.ducklake\" (the DuckDB-file catalog that was the default before SQLite) does: set lake.catalog_kind = \"duckdb\" and lake.catalog = \"sluice.ducklake\" to keep that lake, or move it away to start a new one"
        );
        // Naming the old catalog keeps it; once the SQLite catalog exists, the default is fine.
        jail.create_file(
            "old.toml",
            "[kafka]\ntopics = [\"a\"]\n[lake]\ncatalog_kind = \"duckdb\"\ncatalog = \"sluice.ducklake\"\n",
        )?;
        assert!(Config::load(Some(Path::new("old.toml"))).is_ok());
        jail.create_file("sluice.sqlite", "")?;
        assert!(Config::load(Some(Path::new("sluice.toml"))).is_ok());
        Ok(())
    });
}

#[test]
fn a_memory_limit_splits_into_headroom_base_prefetch_arrow_and_duckdb() {
    const MIB: u64 = 1024 * 1024;
    let s = MemorySplit::derive(512 * MIB, 2, 1, true).unwrap();
    assert_eq!(
        s,
        MemorySplit {
            limit: 512 * MIB,
            headroom: 53_687_091,
            base: 96 * MIB,
            prefetch: 32 * MIB,
            arrow: 174_483_046,
            live: 43_620_761,
            duckdb: 174_483_047,
            threads: 1,
            row_group_bytes: 21_810_380,
            flush_bytes: 58_161_015,
        }
    );
    assert_eq!(
        s.headroom + s.base + s.prefetch + s.arrow + s.duckdb,
        512 * MIB
    );
    let s = MemorySplit::derive(1024 * MIB, 2, 1, true).unwrap();
    assert_eq!(
        (
            s.prefetch,
            s.arrow,
            s.live,
            s.duckdb,
            s.threads,
            s.row_group_bytes,
            s.flush_bytes
        ),
        (
            64 * MIB,
            399_297_741,
            99_824_435,
            399_297_741,
            2,
            24_956_108,
            133_099_247
        )
    );
    // One core: one thread, so its row groups may be twice as large.
    let s = MemorySplit::derive(1024 * MIB, 1, 1, true).unwrap();
    assert_eq!((s.threads, s.row_group_bytes), (1, 49_912_217));
    // 4 GiB on one core: at most 64 MiB.
    let s = MemorySplit::derive(4096 * MIB, 1, 1, true).unwrap();
    assert_eq!((s.threads, s.row_group_bytes), (1, 64 * MIB));
    // Live off: no retention reserved, the whole Arrow share is for pending data.
    let s = MemorySplit::derive(512 * MIB, 2, 1, false).unwrap();
    assert_eq!((s.live, s.flush_bytes), (0, 58_161_015));
    assert_eq!(
        MemorySplit::derive(255 * MIB, 2, 1, true).unwrap_err(),
        "(255 MiB) is below the smallest limit sluice can keep, 256 MiB"
    );
}

#[test]
fn a_memory_limit_lowers_each_part_to_its_share_and_keeps_lower_settings() {
    const MIB: u64 = 1024 * 1024;
    let cfg = load_in_jail("[kafka]\ntopics = [\"events\"]\n[memory]\nlimit_bytes = 536870912\n")
        .unwrap();
    assert_eq!(cfg.lake.memory_limit.as_deref(), Some("166MiB"));
    assert_eq!(cfg.lake.threads, Some(1));
    assert_eq!(cfg.lake.row_group_bytes, Some(21_810_380));
    assert_eq!(cfg.kafka.queued_max_messages_kbytes, 16_384);
    assert_eq!(cfg.kafka.fetch_max_bytes, 16 * MIB);
    assert_eq!(cfg.kafka.max_partition_fetch_bytes, MIB);
    assert_eq!(cfg.live.retention_bytes, 43_620_761);
    assert_eq!(cfg.flush.memory_cap_bytes, 174_483_046 + 32 * MIB);
    assert_eq!(cfg.flush.max_bytes, 58_161_015);
    let b = cfg.memory_budget();
    assert_eq!(b.pending, 174_483_046 - 43_620_761);
    // Applying it again changes nothing.
    let mut again = cfg.clone();
    again.apply_memory_limit().unwrap();
    assert_eq!(again, cfg);

    // Settings below their shares stay; a DuckDB memory_limit above its share is lowered.
    let cfg = load_in_jail(
        "[kafka]\ntopics = [\"events\"]\nfetch_max_bytes = 4194304\n\
         [lake]\nmemory_limit = \"100MB\"\n[flush]\nmax_bytes = 1048576\n\
         [memory]\nlimit_bytes = 536870912\n",
    )
    .unwrap();
    assert_eq!(cfg.lake.memory_limit.as_deref(), Some("100MB"));
    assert_eq!(cfg.kafka.fetch_max_bytes, 4 * MIB);
    assert_eq!(cfg.flush.max_bytes, MIB);
    let cfg = load_in_jail(
        "[kafka]\ntopics = [\"events\"]\n[lake]\nmemory_limit = \"4GB\"\n\
         [memory]\nlimit_bytes = 536870912\n",
    )
    .unwrap();
    assert_eq!(cfg.lake.memory_limit.as_deref(), Some("166MiB"));

    for (toml, want) in [
        (
            "[memory]\nlimit_bytes = 104857600\n",
            "configuration error: `memory.limit_bytes` (100 MiB) is below the smallest limit \
             sluice can keep, 256 MiB",
        ),
        (
            "[lake]\nmemory_limit = \"lots\"\n[memory]\nlimit_bytes = 536870912\n",
            "configuration error: `lake.memory_limit` \"lots\" is not a size like \"2GB\", \
             \"512MiB\" or \"1000000\"",
        ),
    ] {
        assert_eq!(load_in_jail(toml).unwrap_err().to_string(), want, "{toml}");
    }
}

/// Loads `[live]` keys `live` (with one topic) in a jail holding `files`.
fn load_live_in_jail(files: &[(&str, &str)], live: &str) -> Result<Config, ConfigError> {
    let mut out = None;
    Jail::expect_with(|jail| {
        for (name, text) in files {
            jail.create_file(name, text)?;
        }
        jail.create_file(
            "sluice.toml",
            &format!("[kafka]\ntopics = [\"t\"]\n[live]\n{live}"),
        )?;
        out = Some(Config::load(Some(Path::new("sluice.toml"))));
        Ok(())
    });
    out.unwrap()
}

#[test]
fn live_tls_files_come_together_parse_and_are_named_when_they_do_not() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let files = [
        ("cert.pem", cert.as_str()),
        ("key.pem", key.as_str()),
        ("junk.pem", "not a certificate\n"),
        ("cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
    ];
    let cases = [
        (
            "tls_cert_path = \"cert.pem\"\n",
            "`live.tls_key_path` must be set with live.tls_cert_path (the certificate's private key)",
        ),
        (
            "tls_key_path = \"key.pem\"\n",
            "`live.tls_cert_path` must be set with live.tls_key_path (the key's certificate)",
        ),
        (
            "tls_client_ca_path = \"cert.pem\"\n",
            "`live.tls_client_ca_path` needs live.tls_cert_path and live.tls_key_path: client certificates are only asked for over TLS",
        ),
        (
            "tls_cert_path = \"missing.pem\"\ntls_key_path = \"key.pem\"\n",
            "`live.tls_cert_path` cannot read missing.pem: No such file or directory (os error 2)",
        ),
        (
            "tls_cert_path = \"key.pem\"\ntls_key_path = \"key.pem\"\n",
            "`live.tls_cert_path` key.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ),
        (
            "tls_cert_path = \"cut.pem\"\ntls_key_path = \"key.pem\"\n",
            "`live.tls_cert_path` cut.pem is not a valid PEM file: a section has no -----END CERTIFICATE----- line",
        ),
        (
            "tls_cert_path = \"cert.pem\"\ntls_key_path = \"missing.key\"\n",
            "`live.tls_key_path` cannot read missing.key: No such file or directory (os error 2)",
        ),
        (
            "tls_cert_path = \"cert.pem\"\ntls_key_path = \"cert.pem\"\n",
            "`live.tls_key_path` cert.pem holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        ),
        (
            "tls_cert_path = \"cert.pem\"\ntls_key_path = \"key.pem\"\ntls_client_ca_path = \"junk.pem\"\n",
            "`live.tls_client_ca_path` junk.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ),
        (
            "tls_cert_path = \"cert.pem\"\ntls_key_path = \"key.pem\"\ntls_client_ca_path = \"nowhere/ca.pem\"\n",
            "`live.tls_client_ca_path` cannot read nowhere/ca.pem: No such file or directory (os error 2)",
        ),
    ];
    for (live, want) in cases {
        let err = load_live_in_jail(&files, live).unwrap_err().to_string();
        assert_eq!(err, format!("configuration error: {want}"), "for {live:?}");
    }
    // Serving nothing, [live] checks no files.
    load_live_in_jail(&[], "enabled = false\ntls_cert_path = \"missing.pem\"\n").unwrap();

    let mut loaded = None;
    Jail::expect_with(|jail| {
        for (name, text) in &files {
            jail.create_file(name, text)?;
        }
        jail.create_file("sluice.toml", "[kafka]\ntopics = [\"t\"]\n")?;
        jail.set_env("SLUICE_LIVE__TLS_CERT_PATH", "cert.pem");
        jail.set_env("SLUICE_LIVE__TLS_KEY_PATH", "key.pem");
        jail.set_env("SLUICE_LIVE__TLS_CLIENT_CA_PATH", "cert.pem");
        let cfg = Config::load(Some(Path::new("sluice.toml"))).unwrap();
        loaded = Some((cfg.live.tls().unwrap().unwrap(), format!("{cfg:?}")));
        Ok(())
    });
    let (tls, cfg_debug) = loaded.unwrap();
    assert_eq!(tls.cert_path, Path::new("cert.pem"));
    assert_eq!(tls.cert_pem, cert.as_bytes());
    assert_eq!(tls.key_path, Path::new("key.pem"));
    assert_eq!(tls.key_pem, key.as_bytes());
    let (ca_path, ca_pem) = tls.client_ca.as_ref().unwrap();
    assert_eq!(
        (ca_path.as_path(), ca_pem.as_slice()),
        (Path::new("cert.pem"), cert.as_bytes())
    );
    assert_eq!(
        format!("{tls:?}"),
        "LiveTls { cert_path: \"cert.pem\", key_path: \"key.pem\", client_ca_path: Some(\"cert.pem\"), .. }"
    );
    assert!(
        cfg_debug.contains("tls_key_path: Some(\"key.pem\")"),
        "{cfg_debug}"
    );
    let key_line = key.lines().nth(1).unwrap();
    assert!(!cfg_debug.contains(key_line) && !format!("{tls:?}").contains(key_line));
}
