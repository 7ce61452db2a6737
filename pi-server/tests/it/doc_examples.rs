//! Every example exchange in docs/PROTOCOL.md, sent as written to a real server, gets the
//! answer the document shows (the conventions are at the top of "Examples" in the document).
//!
//! A request is a fenced block with the info string `http example-request`; the block after
//! it, `http example-response`, is its answer. The examples run in document order against one
//! fresh server, each on a new connection. A `<...>` in an answer stands for any value; a
//! `<token X>` there also names the value, and the same `<token X>` in a later request is
//! replaced by it. The answer must have the status, the headers shown and, in its JSON body,
//! every field shown with the value shown (arrays element by element).

use crate::*;
use phonebook_proto::json::{Limits, Value, parse};
use std::collections::HashMap;

/// The test server's `max-skew`: 20 years, so that the fixed timestamps of the signed examples
/// (the test vectors, November 2025) stay valid for as long as this document is in use.
pub const EXAMPLE_MAX_SKEW_SECS: u32 = 20 * 365 * 86_400;

#[derive(Debug)]
struct Example {
    line: usize,
    request: String,
    response: String,
}

fn blocks(doc: &str, info: &str) -> Vec<(usize, String)> {
    let fence = format!("```{info}\n");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = doc[from..].find(&fence) {
        let start = from + i + fence.len();
        let end = start + doc[start..].find("```").expect("closed block");
        out.push((doc[..start].lines().count(), doc[start..end].to_owned()));
        from = end + 3;
    }
    out
}

fn examples(doc: &str) -> Vec<Example> {
    let requests = blocks(doc, "http example-request");
    let responses = blocks(doc, "http example-response");
    assert_eq!(
        requests.len(),
        responses.len(),
        "requests and responses pair up"
    );
    requests
        .into_iter()
        .zip(responses)
        .map(|((line, request), (rline, response))| {
            assert!(rline > line, "the answer to line {line} follows it");
            Example {
                line,
                request,
                response,
            }
        })
        .collect()
}

fn placeholder(s: &str) -> bool {
    s.starts_with('<') && s.ends_with('>')
}

/// The request bytes: head lines end in CRLF; the body is the text after the empty line,
/// without the block's last newline. `<token X>` is replaced by its bound value.
fn request_bytes(text: &str, bound: &HashMap<String, String>) -> Result<Vec<u8>, String> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut head = head.trim_end_matches('\n').to_owned();
    for (name, value) in bound {
        head = head.replace(name, value);
    }
    if head.contains("<token") {
        return Err(format!("a token no earlier answer gave: {head}"));
    }
    let mut out = head.replace('\n', "\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.strip_suffix('\n').unwrap_or(body).as_bytes());
    Ok(out)
}

fn matches(
    shown: &Value,
    got: &Value,
    path: &str,
    bound: &mut HashMap<String, String>,
) -> Result<(), String> {
    match (shown, got) {
        (Value::Str(s), _) if placeholder(s) => {
            if s.starts_with("<token") {
                let Value::Str(t) = got else {
                    return Err(format!("{path}: a token must be a string"));
                };
                bound.insert(s.clone(), t.clone());
            }
            Ok(())
        }
        (Value::Object(want), Value::Object(have)) => {
            for (k, v) in want {
                let Some((_, h)) = have.iter().find(|(hk, _)| hk == k) else {
                    return Err(format!("{path}: field {k} missing"));
                };
                matches(v, h, &format!("{path}.{k}"), bound)?;
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Err(format!("{path}: {} items, not {}", have.len(), want.len()));
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                matches(w, h, &format!("{path}[{i}]"), bound)?;
            }
            Ok(())
        }
        (w, h) if w == h => Ok(()),
        (w, h) => Err(format!("{path}: {h:?}, not {w:?}")),
    }
}

fn check(ex: &Example, reply: &Reply, bound: &mut HashMap<String, String>) -> Result<(), String> {
    let (head, body) = ex.response.split_once("\n\n").unwrap_or((&ex.response, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if reply.status != status {
        return Err(format!("status {}, not {status}", reply.status));
    }
    for line in lines {
        let (name, value) = line
            .split_once(": ")
            .ok_or(format!("bad header {line:?}"))?;
        let got = reply
            .header(name)
            .ok_or_else(|| format!("header {name} missing"))?;
        if !placeholder(value) && got != value {
            return Err(format!("header {name}: {got:?}, not {value:?}"));
        }
    }
    let body = body.trim_end();
    if body.is_empty() {
        return Ok(());
    }
    let limits = Limits::default();
    let shown = parse(body.as_bytes(), limits).map_err(|e| format!("shown body: {e}"))?;
    let got = parse(&reply.body, limits).map_err(|e| format!("answer body: {e}"))?;
    matches(&shown, &got, "body", bound)
}

#[test]
fn every_documented_example_gets_the_documented_answer() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let all = examples(doc);
    // Every http block is an example the test runs.
    assert_eq!(doc.matches("```http").count(), 2 * all.len());
    assert!(all.len() >= 15, "only {} examples found", all.len());
    let srv = start(|c| c.max_skew = EXAMPLE_MAX_SKEW_SECS);
    let mut bound = HashMap::new();
    let mut failures = Vec::new();
    for ex in &all {
        let request = match request_bytes(&ex.request, &bound) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("line {}: {e}", ex.line));
                continue;
            }
        };
        let mut c = Conn::open(srv.addr());
        c.send_raw(&request);
        let Some(reply) = c.read_reply() else {
            failures.push(format!("line {}: no answer", ex.line));
            continue;
        };
        if let Err(e) = check(ex, &reply, &mut bound) {
            failures.push(format!(
                "line {}: {e}\n  request: {}\n  answer: {}",
                ex.line,
                ex.request.lines().next().unwrap_or_default(),
                reply.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    srv.stop().unwrap();
}
