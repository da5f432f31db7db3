//! Ignition: the config (spec 3.3.0) that installs the static binary from a URL at
//! /opt/bin/dropfix and enables packaging/dropfix-firstboot.service, so a CoreOS machine's
//! docker starts fixed on its very first boot. Pure: the binary's hash is handed in.

use serde_json::json;

/// The Ignition spec version written: the newest stable one Debian's Ignition (2.14) reads,
/// and the one Butane's `flatcar` 1.0.0 and `fcos` 1.4.0 variants produce.
pub const SPEC_VERSION: &str = "3.3.0";
/// Where the binary goes (/usr is read-only on CoreOS).
pub const BINARY_PATH: &str = "/opt/bin/dropfix";
/// The boot unit, byte for byte as shipped.
pub const FIRSTBOOT_UNIT: &str = include_str!("../packaging/dropfix-firstboot.service");
/// Its name.
pub const FIRSTBOOT_NAME: &str = "dropfix-firstboot.service";
/// The drop-in that runs the unit's command from /opt/bin.
pub const OPT_BIN_DROPIN: &str = include_str!("../templates/ignition-opt-bin.conf");
/// The drop-in's name.
pub const OPT_BIN_DROPIN_NAME: &str = "10-opt-bin.conf";

/// URL schemes Ignition 3.x fetches from.
const SCHEMES: &[&str] = &["http://", "https://", "tftp://", "s3://", "gs://", "arn:"];

/// Whether Ignition can fetch from `url` (a scheme it knows, something after it, no spaces).
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(scheme) = SCHEMES.iter().find(|s| url.starts_with(*s)) else {
        return Err(format!(
            "--url {url}: Ignition fetches only http://, https://, tftp://, s3://, gs:// or arn: URLs"
        ));
    };
    if url.len() == scheme.len() || url.chars().any(char::is_whitespace) {
        return Err(format!("--url {url}: not a URL"));
    }
    Ok(())
}

/// The config, pretty-printed JSON with a final newline. `sha512_hex` is the binary's SHA-512
/// in lowercase hex: Ignition refuses a download whose hash differs.
pub fn config(url: &str, sha512_hex: &str) -> String {
    let v = json!({
        "ignition": { "version": SPEC_VERSION },
        "storage": {
            "files": [{
                "path": BINARY_PATH,
                "mode": 0o755,
                "overwrite": true,
                "contents": {
                    "source": url,
                    "verification": { "hash": format!("sha512-{sha512_hex}") }
                }
            }]
        },
        "systemd": {
            "units": [{
                "name": FIRSTBOOT_NAME,
                "enabled": true,
                "contents": FIRSTBOOT_UNIT,
                "dropins": [{ "name": OPT_BIN_DROPIN_NAME, "contents": OPT_BIN_DROPIN }]
            }]
        }
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_without_a_scheme_ignition_fetches_is_refused_naming_it() {
        assert!(check_url("https://example.org/dropfix").is_ok());
        let e = check_url("ftp://example.org/dropfix").unwrap_err();
        assert!(e.starts_with("--url ftp://example.org/dropfix: "), "{e}");
        assert!(check_url("https://").is_err());
        assert!(check_url("https://a b").is_err());
    }

    #[test]
    fn config_carries_the_hash_mode_and_unit_text() {
        let v: serde_json::Value = serde_json::from_str(&config("https://h/d", "ab")).unwrap();
        assert_eq!(v["ignition"]["version"], "3.3.0");
        let f = &v["storage"]["files"][0];
        assert_eq!(f["mode"], 493);
        assert_eq!(f["contents"]["verification"]["hash"], "sha512-ab");
        assert_eq!(v["systemd"]["units"][0]["contents"], FIRSTBOOT_UNIT);
    }
}
