//! A fast first pass over a `cluster.json` `List`: it checks the JSON syntax of the whole text and finds
//! each entry of `items` with the few fields that say whether a diagnostic needs it (`kind`,
//! `metadata.namespace`, `metadata.name`, the `kubernetes.io/service-name` label), without building any
//! value. [`super::bundle::load_cluster_json_scoped`] then converts only the entries it needs.
//!
//! The pass is conservative: it answers `None` for anything it does not handle exactly like
//! `serde_json` (invalid JSON, nesting deeper than [`MAX_DEPTH`], a top level that is not an object with
//! an `items` array, a top-level key written with escapes, `kind` or `items` given twice), and the caller
//! then parses the whole text the ordinary way, which reports the error with its line and column. A
//! field it cannot read plainly (a non-string value, a string or key with escapes) makes the entry's
//! [`Head`] unknown rather than guessed.
//!
//! What it does not check in entries the caller skips: the values of `\u` escapes (lone surrogates)
//! and whether a number fits a double; only the syntax.

use std::ops::Range;

use super::SERVICE_NAME_LABEL;

/// Deeper nesting than this is left to `serde_json` (whose own limit is 128).
pub(crate) const MAX_DEPTH: usize = 100;

/// The top level of a `List`, skimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkimmedList<'a> {
    /// The list's `kind`, when present as a plain string.
    pub kind: Option<&'a str>,
    /// The entries of `items`, in order.
    pub items: Vec<SkimmedItem<'a>>,
}

/// One entry of `items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkimmedItem<'a> {
    /// Its bytes in the text.
    pub span: Range<usize>,
    /// What it says about itself; `None` when it is not an object or a field could not be read plainly.
    pub head: Option<Head<'a>>,
}

/// The fields of an entry that decide whether it is needed; each `None` when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// `kind`.
    pub kind: Option<&'a str>,
    /// `metadata.namespace`.
    pub namespace: Option<&'a str>,
    /// `metadata.name`.
    pub name: Option<&'a str>,
    /// `metadata.labels["kubernetes.io/service-name"]`.
    pub service_name: Option<&'a str>,
}

/// Skims `text` (see the module documentation); `None` when the caller must parse it the ordinary way.
pub(crate) fn skim_list(text: &str) -> Option<SkimmedList<'_>> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    s.ws();
    s.expect(b'{')?;
    let mut kind: Option<Option<&str>> = None;
    let mut items: Option<Vec<SkimmedItem<'_>>> = None;
    s.ws();
    if !s.eat(b'}') {
        loop {
            s.ws();
            let (key, escaped) = s.string()?;
            if escaped {
                return None;
            }
            s.ws();
            s.expect(b':')?;
            s.ws();
            match key {
                "kind" => {
                    if kind.is_some() {
                        return None;
                    }
                    kind = Some(s.plain_string_or_skip(1)?);
                }
                "items" => {
                    if items.is_some() || s.peek() != Some(b'[') {
                        return None;
                    }
                    items = Some(s.items()?);
                }
                _ => s.value(1)?,
            }
            s.ws();
            if s.eat(b',') {
                continue;
            }
            s.expect(b'}')?;
            break;
        }
    }
    s.ws();
    if s.pos != s.bytes.len() {
        return None;
    }
    let kind = match kind {
        // Absent, or a plain string; anything else (null, a number, an escaped string) is left to the
        // ordinary parse.
        None => None,
        Some(Some(kind)) => Some(kind),
        Some(None) => return None,
    };
    Some(SkimmedList {
        kind,
        items: items?,
    })
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Eight copies of `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Whether any byte of `x` is zero.
fn has_zero_byte(x: u64) -> bool {
    x.wrapping_sub(splat(1)) & !x & splat(0x80) != 0
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return).
    fn ws(&mut self) {
        loop {
            // Indentation: eight spaces at a time.
            while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                if u64::from_ne_bytes(word) != splat(b' ') {
                    break;
                }
                self.pos += 8;
            }
            match self.peek() {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.pos += 1,
                _ => return,
            }
        }
    }

    /// A string at `pos` (which must be `"`): its contents as written, and whether they hold escapes.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while none is a quote, a backslash or a control character.
            while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let x = u64::from_ne_bytes(word);
                let control = x.wrapping_sub(splat(0x20)) & !x & splat(0x80) != 0;
                if control || has_zero_byte(x ^ splat(b'"')) || has_zero_byte(x ^ splat(b'\\')) {
                    break;
                }
                self.pos += 8;
            }
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => return Some((&self.text[start..self.pos - 1], escaped)),
                b'\\' => {
                    escaped = true;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.pos + 1..self.pos + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// A value that is read when it is a plain string: `Some(Some(text))`; `Some(None)` for any other
    /// valid value (skipped); `None` for invalid JSON.
    fn plain_string_or_skip(&mut self, depth: usize) -> Option<Option<&'a str>> {
        if self.peek() == Some(b'"') {
            let (text, escaped) = self.string()?;
            return Some((!escaped).then_some(text));
        }
        self.value(depth)?;
        Some(None)
    }

    /// Skips any value, checking its syntax.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth, |_, _, s, depth| s.value(depth)),
            b'[' => {
                self.pos += 1;
                self.ws();
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat(b',') {
                        continue;
                    }
                    return self.expect(b']');
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object at `pos`; `member(key, escaped, scanner, depth)` reads each member's value.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&'a str, bool, &mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            let (key, escaped) = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            member(key, escaped, self, depth + 1)?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            return self.expect(b'}');
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// The `items` array at `pos`.
    fn items(&mut self) -> Option<Vec<SkimmedItem<'a>>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']') {
            return Some(items);
        }
        loop {
            self.ws();
            let start = self.pos;
            let head = if self.peek() == Some(b'{') {
                self.item()?
            } else {
                self.value(2)?;
                None
            };
            items.push(SkimmedItem {
                span: start..self.pos,
                head,
            });
            self.ws();
            if self.eat(b',') {
                continue;
            }
            self.expect(b']')?;
            return Some(items);
        }
    }

    /// One object entry of `items`: its head, `None` when a field of it could not be read plainly.
    fn item(&mut self) -> Option<Option<Head<'a>>> {
        let mut head = Head::default();
        let mut plain = true;
        self.object(2, |key, escaped, s, depth| {
            if escaped {
                plain = false;
                return s.value(depth);
            }
            match key {
                "kind" => {
                    match s.plain_string_or_skip(depth)? {
                        Some(kind) => head.kind = Some(kind),
                        None => plain = false,
                    }
                    Some(())
                }
                "metadata" if s.peek() == Some(b'{') => {
                    s.object(depth, |key, escaped, s, depth| {
                        if escaped {
                            plain = false;
                            return s.value(depth);
                        }
                        let slot = match key {
                            "namespace" => &mut head.namespace,
                            "name" => &mut head.name,
                            "labels" if s.peek() == Some(b'{') => {
                                return s.object(depth, |key, escaped, s, depth| {
                                    if escaped {
                                        plain = false;
                                        return s.value(depth);
                                    }
                                    if key != SERVICE_NAME_LABEL {
                                        return s.value(depth);
                                    }
                                    match s.plain_string_or_skip(depth)? {
                                        Some(value) => head.service_name = Some(value),
                                        None => plain = false,
                                    }
                                    Some(())
                                });
                            }
                            "labels" => {
                                plain = false;
                                return s.value(depth);
                            }
                            _ => return s.value(depth),
                        };
                        match s.plain_string_or_skip(depth)? {
                            Some(value) => *slot = Some(value),
                            None => plain = false,
                        }
                        Some(())
                    })
                }
                "metadata" => {
                    plain = false;
                    s.value(depth)
                }
                _ => s.value(depth),
            }?;
            Some(())
        })?;
        Some(plain.then_some(head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(text: &str) -> Vec<Option<Head<'_>>> {
        skim_list(text)
            .map(|list| list.items.into_iter().map(|i| i.head).collect())
            .unwrap_or_default()
    }

    #[test]
    fn reads_the_heads_and_spans_of_the_items() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Service", "metadata": {"name": "web", "namespace": "shop", "labels": {"a": "b"}},
             "spec": {"ports": [{"port": 80, "x": [1.5e3, -0, true, false, null, "\"\\\u00e9"]}]}},
            {"metadata": {"labels": {"kubernetes.io/service-name": "web"}, "namespace": "shop", "name": "web-1"}},
            3
        ], "z": {}}"#;
        let list = skim_list(text).expect("skimmed");
        assert_eq!(list.kind, Some("List"));
        assert_eq!(list.items.len(), 3);
        assert!(text[list.items[0].span.clone()].starts_with("{\"kind\": \"Service\""));
        assert!(text[list.items[0].span.clone()].ends_with("]}]}}"));
        assert_eq!(&text[list.items[2].span.clone()], "3");
        assert_eq!(
            list.items[0].head,
            Some(Head {
                kind: Some("Service"),
                namespace: Some("shop"),
                name: Some("web"),
                service_name: None,
            })
        );
        assert_eq!(
            list.items[1].head,
            Some(Head {
                kind: None,
                namespace: Some("shop"),
                name: Some("web-1"),
                service_name: Some("web"),
            })
        );
        assert_eq!(list.items[2].head, None);
    }

    #[test]
    fn fields_it_cannot_read_plainly_make_the_head_unknown() {
        for item in [
            r#"{"kind": "Serv\u0069ce"}"#,
            r#"{"kind": 1}"#,
            r#"{"kind": null}"#,
            r#"{"metadata": null}"#,
            r#"{"metadata": {"name": ["x"]}}"#,
            r#"{"metadata": {"n\u0061me": "x"}}"#,
            r#"{"metadata": {"labels": []}}"#,
            r#"{"metadata": {"labels": {"kubernetes.io/service-name": 3}}}"#,
            r#"{"k\u0069nd": "Service"}"#,
        ] {
            let text = format!("{{\"items\": [{item}]}}");
            assert_eq!(heads(&text), vec![None], "{item}");
        }
        // Later keys win, as in a parsed object.
        let text = r#"{"items": [{"kind": "Pod", "kind": "Service", "metadata": {"name": "a", "name": "b"}}]}"#;
        let head = heads(text).pop().flatten().expect("a head");
        assert_eq!((head.kind, head.name), (Some("Service"), Some("b")));
    }

    #[test]
    fn anything_else_is_left_to_the_ordinary_parse() {
        let deep = format!("{{\"items\": [{}{}]}}", "[".repeat(150), "]".repeat(150));
        for text in [
            "",
            "[]",
            "{}",
            "{\"kind\": \"List\"}",
            "{\"items\": {}}",
            "{\"items\": null}",
            "{\"items\": [], \"items\": []}",
            "{\"kind\": 1, \"items\": []}",
            "{\"kind\": \"L\", \"kind\": \"L\", \"items\": []}",
            "{\"\\u0069tems\": []}",
            "{\"items\": []} x",
            "{\"items\": [1,]}",
            "{\"items\": [{\"a\": 1,}]}",
            "{\"items\": [{\"a\" 1}]}",
            "{\"items\": [{\"a\": 01}]}",
            "{\"items\": [{\"a\": 1.}]}",
            "{\"items\": [{\"a\": 1e}]}",
            "{\"items\": [{\"a\": -}]}",
            "{\"items\": [{\"a\": tru}]}",
            "{\"items\": [{\"a\": \"\\x\"}]}",
            "{\"items\": [{\"a\": \"\\u12g4\"}]}",
            "{\"items\": [{\"a\": \"tab\there\"}]}",
            "{\"items\": [{\"a\": \"open}]}",
            "{\"items\": [{\"a\": [1, 2}]}",
            "{\"items\": [{\"a\": 1}",
            deep.as_str(),
        ] {
            assert_eq!(skim_list(text), None, "{text:?}");
            if !text.contains("items\": {}")
                && !text.contains("items\": null")
                && !text.contains("\"items\": [], \"items\"")
                && !text.contains("\"kind\": 1")
                && !text.contains("\"kind\": \"L\", \"kind\"")
                && !text.contains("\\u0069tems")
                && text != "[]"
                && text != "{}"
                && text != "{\"kind\": \"List\"}"
                && text != deep
            {
                // The rest is invalid JSON to serde_json too.
                assert!(
                    serde_json::from_str::<serde_json::Value>(text).is_err(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_valid_documents() {
        let text = r#" { "items" : [ { "a" : [ ] , "b" : { } , "c" : "  \" \\ \/ \b \f \n \r \t \uABCD" , "d" : -0.5E+10 } , [ ] , "" , 0 ] , "kind" : "ServiceList" } "#;
        let list = skim_list(text).expect("skimmed");
        let value: serde_json::Value = serde_json::from_str(text).expect("valid");
        let items = value["items"].as_array().expect("items");
        assert_eq!(list.kind, Some("ServiceList"));
        assert_eq!(list.items.len(), items.len());
        for (skimmed, parsed) in list.items.iter().zip(items) {
            let reparsed: serde_json::Value =
                serde_json::from_str(&text[skimmed.span.clone()]).expect("an item");
            assert_eq!(&reparsed, parsed);
        }
    }
}
