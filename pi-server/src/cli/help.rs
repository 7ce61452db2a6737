//! The `--help` text, built from the table of settings.

use super::settings::{SETTINGS, env_var_name};
use super::{ENV_CONFIG, MAX_CONFIG_FILE_BYTES, VERSION};
use crate::config::Config;

/// The `--help` text.
pub fn help_text() -> String {
    let defaults = Config::default();
    let mut out = format!(
        "pi-server {VERSION}: the phone book of the FFXIV peer-to-peer mod sync, a small HTTP \
         server that maps player names to signed peer addresses, shown only to whom each player allows.

USAGE:
    pi-server                        serve on [::]:3000 with an in-memory table
    pi-server --snapshot /var/lib/pi-server/snapshot.bin
                                     keep the table across restarts
    pi-server --config /boot/pi-server.conf
    pi-server --print-config > pi-server.conf
                                     write the effective settings as a config file

Every setting is a flag (--ttl 600 or --ttl=600), an environment variable
(PI_SERVER_TTL=600) or a line of the config file (ttl = 600).
Precedence: flag > environment > config file > default.

OPTIONS:
    --config PATH       config file of `name = value` lines (env {ENV_CONFIG}); `#` starts a
                        comment line; at most {MAX_CONFIG_FILE_BYTES} bytes; CRLF is fine
    --print-config      print the effective settings in config-file syntax and exit
    -h, --help          print this help and exit
    -V, --version       print the version and exit

SETTINGS:
"
    );
    for setting in &SETTINGS {
        let default = (setting.get)(&defaults);
        let range = match &setting.range {
            Some(r) => format!(" [range: {}-{}]", r.start(), r.end()),
            None => String::new(),
        };
        let default = if default.is_empty() || default == "\"\"" {
            "none"
        } else {
            &default
        };
        let facts = format!("[default: {default}]{range}");
        let env = format!("[env: {}]", env_var_name(setting.name));
        // A long default (a URL) puts the variable on a line of its own.
        let sep = if 8 + facts.len() + 1 + env.len() > HELP_WIDTH {
            "\n        "
        } else {
            " "
        };
        out.push_str(&format!(
            "    --{} {}\n{}        {facts}{sep}{env}\n",
            setting.name,
            setting.kind.placeholder(),
            wrap(setting.doc, HELP_WIDTH - 8, "        "),
        ));
    }
    out.push_str(
        "
API (docs/PROTOCOL.md has the exact bodies, signatures and status codes):
    POST   /api/register          register or renew a signed name -> address binding
    GET    /api/lookup/{name}     one player's address (Authorization: Bearer <token>)
    POST   /api/lookup            up to 64 names at once (Authorization: Bearer <token>)
    DELETE /api/unregister        remove a registration (signed)
    GET    /api/health            {\"status\":\"ok\",\"activeUsers\":N,...}
    GET    /metrics               Prometheus text metrics

Logs go to stderr (journald under systemd); player addresses appear only at debug and trace.
",
    );
    out
}

/// Columns the help text and the config-file comments are wrapped to.
pub(super) const HELP_WIDTH: usize = 96;

/// `text` split at spaces into lines of at most `width` characters (a longer word stays whole),
/// each line starting with `indent` and ending with a newline.
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}
