//! The mock provider's fault-script parser: `Scenario::from_json_str` and
//! `Scenario::from_toml_str` on any text.
//!
//! Checked besides "never panics":
//! - a script that parses is valid (`validate`), and a mock provider can be built from it;
//! - it survives a round trip through its own JSON and TOML forms unchanged;
//! - a script that does not parse says what is wrong (which field, or that the text is not JSON
//!   or TOML).
#![no_main]

use libfuzzer_sys::fuzz_target;
use towline_mock::{MockProvider, Scenario, ScriptError};

fn check(parsed: Result<Scenario, ScriptError>, text: &str) {
    match parsed {
        Ok(scenario) => {
            scenario.validate().expect("a parsed scenario is valid");
            MockProvider::new(scenario.clone()).expect("a parsed scenario builds a provider");
            let json = scenario.to_json_string();
            let again = Scenario::from_json_str(&json)
                .unwrap_or_else(|e| panic!("its JSON form reads back: {e}\n{json}"));
            assert_eq!(again, scenario, "JSON round trip\n{json}");
            let toml = scenario.to_toml_string();
            let again = Scenario::from_toml_str(&toml)
                .unwrap_or_else(|e| panic!("its TOML form reads back: {e}\n{toml}"));
            assert_eq!(again, scenario, "TOML round trip\n{toml}");
            let _ = format!("{scenario:?}");
        }
        Err(err) => {
            assert!(!err.to_string().is_empty() && !err.message().is_empty());
            let _ = (err.field(), text);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(Scenario::from_json_str(text), text);
    check(Scenario::from_toml_str(text), text);
});
