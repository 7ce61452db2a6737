//! The config-file writer (`--print-config`): what [`super::parse_config_file`] reads back.

use super::help::{HELP_WIDTH, wrap};
use super::settings::SETTINGS;
use crate::config::Config;

/// `config` in config-file syntax, one documented `name = value` per setting.
pub fn to_config_file(config: &Config) -> String {
    let mut out = String::from(
        "# pi-server settings (pi-server --print-config). Read with --config PATH.\n\
         # Precedence: flag > environment variable > this file > default.\n",
    );
    for setting in &SETTINGS {
        out.push_str(&format!(
            "\n{}{} = {}\n",
            wrap(setting.doc, HELP_WIDTH - 2, "# "),
            setting.name,
            (setting.get)(config)
        ));
    }
    out
}
