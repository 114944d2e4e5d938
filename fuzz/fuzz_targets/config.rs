//! The config loader, YAML and env: any input gives a config or a list of problems,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxypool::config::ConfigBuilder;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line picks the source: `env` reads the rest as KEY=VALUE lines.
    let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
    let builder = if head == "env" {
        let vars: Vec<(String, String)> = rest
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (format!("CRYPTOFEED_PROXY_{k}"), v.to_owned()))
            .collect();
        ConfigBuilder::new().env_vars(vars)
    } else {
        ConfigBuilder::new().yaml_str(text)
    };
    match builder.build() {
        Ok(config) => {
            let _ = config.route_table();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
