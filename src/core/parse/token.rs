//! Splits the options of a rule into words, the way `iptables-restore` does.
//!
//! * Words are separated by ASCII whitespace; runs of it count as one separator (so the two spaces of
//!   `--nfacct-name  NAME` change nothing).
//! * A `"` opens a quoted part that runs to the next unescaped `"`. Inside it, a backslash takes the next
//!   character literally: `\"` is a quote, `\\` a backslash, `\'` an apostrophe (`iptables-save` escapes all
//!   three). The closing quote ends the word, as it does for `iptables-restore`. Outside quotes a backslash
//!   is an ordinary character.
//! * A word that had a quoted part is marked [`Word::quoted`]: `"!"` or `"-j"` are values, never a negation
//!   or an option.
//!
//! Words borrow from the input unless an escape or a quote in the middle of a word forces a copy.

use std::borrow::Cow;

use super::error::RuleError;

/// One word of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word<'a> {
    /// The text, with quotes and escapes removed.
    pub text: Cow<'a, str>,
    /// Whether any part of the word was quoted.
    pub quoted: bool,
}

impl Word<'_> {
    /// An unquoted `!`.
    pub fn is_bang(&self) -> bool {
        !self.quoted && self.text == "!"
    }

    /// An unquoted word that looks like an option: `-x` or `--long`.
    pub fn is_option(&self) -> bool {
        !self.quoted && self.text.len() >= 2 && self.text.starts_with('-')
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What a byte means to the tokenizer.
const PLAIN: u8 = 0;
const SPACE: u8 = 1;
const QUOTE: u8 = 2;
const BACKSLASH: u8 = 3;

/// The class of every byte value (bytes of multi-byte characters are all `PLAIN`).
static CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    table[b' ' as usize] = SPACE;
    table[b'\t' as usize] = SPACE;
    table[b'\n' as usize] = SPACE;
    table[0x0c] = SPACE;
    table[b'\r' as usize] = SPACE;
    table[b'"' as usize] = QUOTE;
    table[b'\\' as usize] = BACKSLASH;
    table
};

fn class(byte: u8) -> u8 {
    CLASS[usize::from(byte)]
}

/// The position of the first byte at or after `from` for which `stop` holds, or the end.
fn scan(bytes: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    let mut pos = from;
    while bytes.get(pos).is_some_and(|b| !stop(*b)) {
        pos += 1;
    }
    pos
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (with its high bit) every byte of `word` equal to `byte`. The lowest mark is always right; marks
/// above a real one may be wrong, which is why the scanners below only trust the lowest.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Like [`scan`] for the stops `is_stop`, eight bytes at a time: `marks` must mark every byte that
/// `is_stop` accepts (and may mark others).
fn scan_words(
    bytes: &[u8],
    from: usize,
    marks: impl Fn(u64) -> u64,
    is_stop: impl Fn(u8) -> bool,
) -> usize {
    let mut pos = from;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let marked = marks(word);
        if marked == 0 {
            pos += 8;
            continue;
        }
        let at = pos + (marked.trailing_zeros() / 8) as usize;
        if bytes.get(at).is_some_and(|b| is_stop(*b)) {
            return at;
        }
        pos = at + 1;
    }
    scan(bytes, pos, is_stop)
}

/// The end of an unquoted run: the next whitespace or `"`.
fn plain_end(bytes: &[u8], from: usize) -> usize {
    scan_words(
        bytes,
        from,
        // Bytes below 0x21 (every whitespace byte among them) and quotes.
        |word| (word.wrapping_sub(ONES * 0x21) & !word & HIGHS) | bytes_equal(word, b'"'),
        |b| matches!(class(b), SPACE | QUOTE),
    )
}

/// The next `"` or backslash inside a quoted part.
fn quoted_stop(bytes: &[u8], from: usize) -> usize {
    scan_words(
        bytes,
        from,
        |word| bytes_equal(word, b'"') | bytes_equal(word, b'\\'),
        |b| matches!(class(b), QUOTE | BACKSLASH),
    )
}

/// Splits `text` into words, appending them to `out` (which is not cleared first).
pub(crate) fn tokenize_into<'a>(text: &'a str, out: &mut Vec<Word<'a>>) -> Result<(), RuleError> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(&first) = bytes.get(pos) {
        match class(first) {
            SPACE => pos += 1,
            QUOTE => {
                let (word, next) = quoted_part(text, pos + 1, "")?;
                out.push(word);
                pos = next;
            }
            _ => {
                let start = pos;
                // A backslash is ordinary outside quotes.
                pos = plain_end(bytes, pos + 1);
                // `start` and `pos` sit on ASCII bytes (or the end), so they are char boundaries.
                let plain = text.get(start..pos).unwrap_or_default();
                if bytes.get(pos) == Some(&b'"') {
                    let (word, next) = quoted_part(text, pos + 1, plain)?;
                    out.push(word);
                    pos = next;
                } else {
                    out.push(Word {
                        text: Cow::Borrowed(plain),
                        quoted: false,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reads a quoted part that starts at `start` (just after its opening quote); returns the word (with
/// `prefix` in front) and the position after the closing quote.
fn quoted_part<'a>(
    text: &'a str,
    start: usize,
    prefix: &'a str,
) -> Result<(Word<'a>, usize), RuleError> {
    let bytes = text.as_bytes();
    let mut owned: Option<String> = (!prefix.is_empty()).then(|| prefix.to_string());
    let mut segment = start;
    let mut pos = start;
    loop {
        pos = quoted_stop(bytes, pos);
        let piece = text.get(segment..pos).unwrap_or_default();
        match bytes.get(pos) {
            None => return Err(RuleError::UnterminatedQuote),
            Some(b'"') => {
                let word = match owned {
                    Some(mut s) => {
                        s.push_str(piece);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(piece),
                };
                return Ok((
                    Word {
                        text: word,
                        quoted: true,
                    },
                    pos + 1,
                ));
            }
            Some(_) => {
                // A backslash: the next character, whatever it is, is taken literally.
                let s = owned.get_or_insert_with(String::new);
                s.push_str(piece);
                let escaped = text
                    .get(pos + 1..)
                    .and_then(|rest| rest.chars().next())
                    .ok_or(RuleError::UnterminatedQuote)?;
                s.push(escaped);
                pos += 1 + escaped.len_utf8();
                segment = pos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        tokenize_into(text, &mut out).unwrap();
        out.into_iter()
            .map(|w| (w.text.into_owned(), w.quoted))
            .collect()
    }

    fn plain(list: &[&str]) -> Vec<(String, bool)> {
        list.iter().map(|w| (w.to_string(), false)).collect()
    }

    #[test]
    fn splits_on_any_run_of_whitespace() {
        assert_eq!(
            words("  -m nfacct --nfacct-name  localhost_nps_accepted_pkts\t-j X "),
            plain(&[
                "-m",
                "nfacct",
                "--nfacct-name",
                "localhost_nps_accepted_pkts",
                "-j",
                "X"
            ])
        );
        assert!(words("").is_empty());
        assert!(words(" \t ").is_empty());
    }

    #[test]
    fn a_quoted_string_is_one_word() {
        let w = words(r#"--comment "default/web:http cluster IP" -j X"#);
        assert_eq!(w[1], ("default/web:http cluster IP".to_string(), true));
        assert_eq!(w[2], ("-j".to_string(), false));
    }

    #[test]
    fn escapes_inside_quotes_are_taken_literally() {
        let w = words(r#""say \"hi\" \\ it's \'x\'""#);
        assert_eq!(w, vec![(r#"say "hi" \ it's 'x'"#.to_string(), true)]);
    }

    #[test]
    fn quoted_words_borrow_when_they_can() {
        let mut out = Vec::new();
        tokenize_into(r#"a "b c" "d\"e""#, &mut out).unwrap();
        assert!(matches!(out[0].text, Cow::Borrowed("a")));
        assert!(matches!(out[1].text, Cow::Borrowed("b c")));
        assert!(matches!(out[2].text, Cow::Owned(_)));
    }

    #[test]
    fn bang_is_its_own_word_and_a_quoted_bang_is_a_value() {
        let mut out = Vec::new();
        tokenize_into(r#"! -s 1.2.3.4 "!""#, &mut out).unwrap();
        assert!(out[0].is_bang());
        assert!(out[1].is_option());
        assert!(!out[3].is_bang());
        assert_eq!(out[3].as_str(), "!");
    }

    #[test]
    fn the_closing_quote_ends_the_word_and_a_prefix_joins_it() {
        assert_eq!(
            words(r#"ab"c d"ef"#),
            vec![("abc d".to_string(), true), ("ef".to_string(), false)]
        );
        assert_eq!(words(r#""""#), vec![(String::new(), true)]);
    }

    #[test]
    fn an_unclosed_quote_is_an_error() {
        let mut out = Vec::new();
        assert_eq!(
            tokenize_into(r#"--comment "default/we"#, &mut out),
            Err(RuleError::UnterminatedQuote)
        );
        assert_eq!(
            tokenize_into(r#""abc\"#, &mut out),
            Err(RuleError::UnterminatedQuote)
        );
    }

    #[test]
    fn long_words_and_control_bytes_are_split_right() {
        // Words longer than eight bytes, stops at every offset, and control bytes that are not spaces.
        for pad in 0..20 {
            let word = "x".repeat(pad);
            let text = format!("{word}\u{1}y\t\"{word}\\\"{word}\" {word}\u{7f}é");
            let mut out = Vec::new();
            tokenize_into(&text, &mut out).unwrap();
            let got: Vec<&str> = out.iter().map(Word::as_str).collect();
            let want = [
                format!("{word}\u{1}y"),
                format!("{word}\"{word}"),
                format!("{word}\u{7f}é"),
            ];
            assert_eq!(got, want, "pad {pad}");
        }
    }

    /// The eight-bytes-at-a-time scanners agree with a byte-by-byte reading.
    fn reference(text: &str) -> Result<Vec<(String, bool)>, RuleError> {
        let mut words = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
            if chars.peek().is_none() {
                return Ok(words);
            }
            let (mut word, mut quoted) = (String::new(), false);
            while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace()) {
                if c != '"' {
                    word.push(c);
                    continue;
                }
                quoted = true;
                loop {
                    match chars.next().ok_or(RuleError::UnterminatedQuote)? {
                        '"' => break,
                        '\\' => word.push(chars.next().ok_or(RuleError::UnterminatedQuote)?),
                        c => word.push(c),
                    }
                }
                break;
            }
            words.push((word, quoted));
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_char_by_char_reading(text in "[a-z\"\\\\ \t\u{1}\u{7f}é∂!-]{0,40}") {
            let mut out = Vec::new();
            let fast = tokenize_into(&text, &mut out)
                .map(|()| out.iter().map(|w| (w.text.to_string(), w.quoted)).collect::<Vec<_>>());
            proptest::prop_assert_eq!(fast, reference(&text));
        }
    }

    #[test]
    fn multibyte_text_survives_escapes() {
        assert_eq!(
            words("\"é\\ü ß\" ∂"),
            vec![("éü ß".to_string(), true), ("∂".to_string(), false)]
        );
    }
}
