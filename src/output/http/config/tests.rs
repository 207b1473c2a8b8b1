//! Config tables: defaults, every error at once with its key, secrets from file and env, and `Debug`
//! never showing a secret.
use super::*;

fn table(text: &str) -> toml::Table {
    text.parse::<toml::Table>().expect("test TOML")
}

/// Reads `text` as the table of `output[2]`.
fn read(text: &str) -> (Result<HttpConfig, HttpFiles>, Vec<ConfigError>) {
    let t = table(text);
    let mut d = Diagnostics::new();
    let mut r = Reader::new(&mut d, &t, "output[2]");
    let out = HttpConfig::from_toml(&mut r, &|_| None);
    drop(r);
    (out, d.finish())
}

fn ok(text: &str) -> HttpConfig {
    match read(text) {
        (Ok(c), e) if e.is_empty() => c,
        (c, e) => panic!("{text}\n{c:?}\n{e:?}"),
    }
}

fn errs(text: &str) -> Vec<ConfigError> {
    match read(text) {
        (Ok(c), _) => panic!("accepted: {text}\n{c:?}"),
        (Err(_), e) => e,
    }
}

fn has(errs: &[ConfigError], key: &str, part: &str) -> bool {
    errs.iter().any(|e| e.key == key && e.reason.contains(part))
}

#[test]
fn ndjson_defaults() {
    let c = ok("type = \"http\"\nname = \"hook\"\nurl = \"http://127.0.0.1:9000/in\"\n");
    assert_eq!(c.format, Format::Ndjson);
    assert_eq!(c.batch_size, 500);
    assert_eq!(c.flush_interval, Duration::from_secs(1));
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert!(!c.gzip);
    assert_eq!(c.auth, Auth::None);
    assert!(c.splunk.is_none() && c.elastic.is_none());
}

#[test]
fn splunk_defaults_and_secret_from_env() {
    std::env::set_var("LONGCONN_TEST_HEC_TOKEN", "abc-123\n");
    let c = ok(r#"
        url = "https://splunk:8088"
        format = "splunk_hec"
        token_env = "LONGCONN_TEST_HEC_TOKEN"
        ack = true
        ack_timeout = "5s"
    "#);
    assert_eq!(
        c.auth,
        Auth::Token(SecretSource::Env("LONGCONN_TEST_HEC_TOKEN".into()))
    );
    let Auth::Token(token) = &c.auth else {
        panic!("{c:?}")
    };
    assert_eq!(token.read(), Ok(Secret::new("abc-123")));
    let s = c.splunk.as_ref().expect("splunk");
    assert_eq!(s.sourcetype, "longconn:alert");
    assert_eq!(s.source, "longconn");
    assert_eq!(s.host, None);
    let ack = s.ack.as_ref().expect("ack");
    assert_eq!(ack.timeout, Duration::from_secs(5));
    assert_eq!(ack.channel, None, "made when the output is built");
    let debug = format!("{c:?}");
    assert!(!debug.contains("abc-123"), "{debug}");
    let inline = format!("{:?}", SecretSource::Inline(Secret::new("abc-123")));
    assert!(
        !inline.contains("abc-123") && inline.contains("***"),
        "{inline}"
    );
}

#[test]
fn elastic_secrets_from_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    std::fs::write(&path, "s3cret\n").expect("write");
    let c = ok(&format!(
        "url = \"https://es:9200\"\nformat = \"elasticsearch\"\nusername = \"longconn\"\npassword_file = {:?}\n",
        path.display().to_string()
    ));
    assert_eq!(
        c.auth,
        Auth::Basic {
            username: "longconn".into(),
            password: SecretSource::File(path.clone())
        }
    );
    let files = c.files();
    assert_eq!(files.secrets[0].0, "password_file");
    assert_eq!(files.secrets[0].1.read(), Ok(Secret::new("s3cret")));
    assert_eq!(
        c.elastic.as_ref().map(|e| e.index.as_str()),
        Some(DEFAULT_ELASTIC_INDEX)
    );
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn every_error_at_once() {
    let e = errs(
        r#"
        url = "ftp://x"
        format = "elasticsearch"
        batch_size = 0
        flush_interval = "soon"
        gzip = "yes"
        colour = "blue"
        ack = true
        api_key_env = "LONGCONN_TEST_UNSET_VARIABLE"
        index = "Bad Index"
        headers = { "Content-Type" = "text/plain", "X-Ok" = "1", "bad name" = "x" }
    "#,
    );
    for (key, part) in [
        ("output[2].url", "scheme"),
        ("output[2].batch_size", "out of range"),
        ("output[2].flush_interval", "not a duration"),
        ("output[2].gzip", "true or false"),
        ("output[2].colour", "unknown key"),
        ("output[2].ack", "only of splunk_hec"),
        ("output[2].index", "not a valid index"),
        ("output[2].headers.Content-Type", "sets this header"),
        ("output[2].headers.bad name", "not a valid header name"),
    ] {
        assert!(has(&e, key, part), "{key} ({part}) missing from {e:#?}");
    }
    assert_eq!(e.len(), 9, "{e:#?}");
}

#[test]
fn missing_and_conflicting() {
    let e = errs("format = \"splunk_hec\"\n");
    assert!(has(&e, "output[2].url", "missing"), "{e:?}");
    assert!(has(&e, "output[2].token_file", "missing"), "{e:?}");
    let e =
        errs("url = \"http://h\"\nformat = \"splunk_hec\"\ntoken = \"a\"\ntoken_file = \"/b\"\n");
    assert!(has(&e, "output[2].token_file", "only one of"), "{e:?}");
    let e =
        errs("url = \"http://h\"\nformat = \"elasticsearch\"\nusername = \"u\"\napi_key = \"k\"\n");
    assert!(has(&e, "output[2]", "one way"), "{e:?}");
    let e = errs("url = \"http://h\"\nformat = \"elasticsearch\"\nusername = \"u\"\n");
    assert!(has(&e, "output[2].password_file", "missing"), "{e:?}");
    let e = errs("url = \"http://user:pw@h\"\n");
    assert!(has(&e, "output[2].url", "credentials"), "{e:?}");
    assert!(!format!("{e:?}").contains("pw@"), "{e:?}");
    let e = errs("url = \"http://h\"\nformat = \"xml\"\ntoken = \"t\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(has(&e, "output[2].format", "not one of"), "{e:?}");
    let e = errs("url = \"http://h\"\nformat = \"splunk_hec\"\ntoken = \"t\"\nchannel = \"c\"\n");
    assert!(has(&e, "output[2].channel", "ack = true"), "{e:?}");
}

#[test]
fn loading_is_pure_and_secrets_are_read_on_demand() {
    let text = "url = \"https://s:8088\"\nformat = \"splunk_hec\"\ntoken_file = \"/nonexistent/token\"\nack = true\nca_file = \"/nonexistent/ca.pem\"\n";
    assert_eq!(ok(text), ok(text), "two loads of one table are equal");
    let files = ok(text).files();
    assert_eq!(files.ca_file, Some(PathBuf::from("/nonexistent/ca.pem")));
    let (key, source) = &files.secrets[0];
    assert_eq!(key, "token_file");
    let reason = source.read().expect_err("no such file");
    assert!(
        reason.starts_with("cannot read /nonexistent/token: "),
        "{reason}"
    );
    let unset = SecretSource::Env("LONGCONN_TEST_UNSET_VARIABLE".into());
    assert_eq!(
        unset.read(),
        Err("environment variable LONGCONN_TEST_UNSET_VARIABLE is not set (or not UTF-8)".into())
    );
}

#[test]
fn inline_secret_is_not_echoed_in_errors() {
    let e = errs("url = \"http://h\"\nformat = \"splunk_hec\"\ntoken = 12345\n");
    assert!(has(&e, "output[2].token", "expected a string"), "{e:?}");
    assert!(!format!("{e:?}").contains("12345"));
}

#[test]
fn effective_toml_reads_back_and_hides_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("key");
    std::fs::write(&path, "the-api-key\n").expect("write");
    std::env::set_var("LONGCONN_TEST_HEC_TOKEN_2", "hec-secret");
    for text in [
        format!(
            "url = \"https://es:9200\"\nformat = \"elasticsearch\"\napi_key_file = {:?}\ngzip = true\n",
            path.display().to_string()
        ),
        "url = \"https://s:8088\"\nformat = \"splunk_hec\"\ntoken_env = \"LONGCONN_TEST_HEC_TOKEN_2\"\nack = true\nindex = \"net\"\ntimeout = \"1m 30s\"\n".to_string(),
        "url = \"http://h/in\"\nheaders = { X-A = \"secret-header\" }\nbatch_size = 7\n".to_string(),
    ] {
        let c = ok(&text);
        let effective = c.to_effective_toml();
        let shown = format!("{}\n{c:?}", effective);
        for secret in ["the-api-key", "hec-secret", "secret-header"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        if c.headers.is_empty() {
            assert_eq!(ok(&effective.to_string()), c, "{shown}");
        }
    }
    let inline = ok("url = \"http://h\"\ntoken = \"abc\"\n").to_effective_toml();
    assert_eq!(inline.get("token").and_then(|v| v.as_str()), Some("***"));
}

#[test]
fn channels_differ() {
    assert_ne!(new_channel(), new_channel());
    let c = new_channel();
    let parts: Vec<&str> = c.split('-').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    assert_eq!(lens, [8, 4, 4, 4, 12], "{c}");
    assert!(c.chars().all(|x| x == '-' || x.is_ascii_hexdigit()), "{c}");
    assert!(parts[2].starts_with('4'), "version 4: {c}");
}

#[test]
fn a_format_of_the_wrong_type_hides_the_keys_of_every_format() {
    // Which format was meant is unknown: keys of any format are not reported, others still are.
    let e =
        errs("url = \"http://h\"\nformat = [\"splunk_hec\"]\nsourcetype = \"s\"\nfsync = \"x\"\n");
    assert!(has(&e, "output[2].format", "expected a string"), "{e:?}");
    assert!(!e.iter().any(|x| x.key == "output[2].sourcetype"), "{e:?}");
    assert!(has(&e, "output[2].fsync", "unknown key"), "{e:?}");
}
