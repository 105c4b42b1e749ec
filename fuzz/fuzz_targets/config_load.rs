//! The configuration loader on arbitrary input: TOML and YAML parsing and validation never
//! panic; whatever parses and validates writes back out and reads back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_lb::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for config in [Config::from_toml_str(text), Config::from_yaml_str(text)]
        .into_iter()
        .flatten()
    {
        #[allow(clippy::eq_op)]
        let has_nan = config != config;
        if has_nan {
            continue; // a NaN somewhere: equal to nothing, itself included
        }
        let valid = config.validate().is_ok();
        if let Ok(toml) = config.to_toml_string() {
            let again = Config::from_toml_str(&toml).expect("written TOML reads back");
            assert_eq!(again, config);
            assert_eq!(again.validate().is_ok(), valid);
        }
        if let Ok(yaml) = config.to_yaml_string() {
            let again = Config::from_yaml_str(&yaml).expect("written YAML reads back");
            assert_eq!(again, config);
        }
    }
});
