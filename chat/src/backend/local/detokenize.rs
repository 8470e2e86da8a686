//! Incremental detokenisation, the way text-generation-inference streams text: each new
//! token is decoded together with a few tokens before it (from `prefix_offset`), and only
//! the text past what those tokens alone decode to (up to `read_offset`) is new.
//!
//! Re-decoding the whole answer per token is quadratic in its length, and slicing that text
//! at the previous length assumes decoding only ever appends: a tokenizer that normalises
//! (composes `e` + U+0301 into `é`) or cleans up spaces breaks that, and the slice can land
//! inside a character. Here decoding works on a short window and the new text is found by
//! comparing characters, so a cut is always on a character boundary.

/// Where the stream stands in the generated tokens.
#[derive(Debug, Default)]
pub(super) struct IncrementalDecoder {
    /// First token of the window decoded for context (its text was sent already).
    prefix_offset: usize,
    /// Tokens before this one have had their text sent.
    read_offset: usize,
}

impl IncrementalDecoder {
    /// The text that the last token of `ids` completes (empty while it ends inside a
    /// character: the rest arrives with the next tokens). `decode` turns token ids into text.
    pub(super) fn next<E>(
        &mut self,
        ids: &[u32],
        decode: impl Fn(&[u32]) -> Result<String, E>,
    ) -> Result<String, E> {
        let prefix = decode(&ids[self.prefix_offset..self.read_offset])?;
        let text = decode(&ids[self.prefix_offset..])?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let fresh = match text.strip_prefix(prefix.as_str()) {
            Some(fresh) => fresh,
            // The window decodes differently with the new token: send what differs.
            None => &text[common_prefix_len(&prefix, &text)..],
        };
        if fresh.is_empty() {
            return Ok(String::new());
        }
        let fresh = fresh.to_string();
        self.prefix_offset = self.read_offset;
        self.read_offset = ids.len();
        Ok(fresh)
    }
}

/// Bytes of the longest common prefix of `a` and `b` made of whole characters.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::convert::Infallible;

    use super::*;

    /// Feeds `ids` one at a time and returns the streamed text and the longest window decoded.
    fn stream(ids: &[u32], decode: impl Fn(&[u32]) -> String) -> (String, usize) {
        let widest = RefCell::new(0);
        let decode = |window: &[u32]| {
            let mut w = widest.borrow_mut();
            *w = (*w).max(window.len());
            Ok::<_, Infallible>(decode(window))
        };
        let mut decoder = IncrementalDecoder::default();
        let mut out = String::new();
        for end in 1..=ids.len() {
            out.push_str(&decoder.next(&ids[..end], decode).unwrap());
        }
        (out, widest.into_inner())
    }

    /// Byte-fallback tokens: each id is one byte of UTF-8.
    fn bytes_decoder(ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().map(|&b| b as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn characters_split_across_tokens_arrive_whole() {
        let text = "héllo € 😀 — ok";
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        let (out, _) = stream(&ids, bytes_decoder);
        assert_eq!(out, text);
    }

    #[test]
    fn each_token_decodes_a_short_window_not_the_whole_answer() {
        let ids: Vec<u32> = "a long answer ".repeat(40).bytes().map(u32::from).collect();
        let (out, widest) = stream(&ids, bytes_decoder);
        assert_eq!(out.len(), ids.len());
        assert!(widest <= 4, "decoded windows of up to {widest} tokens");
    }

    #[test]
    fn a_decoder_that_rewrites_earlier_text_never_splits_a_character() {
        // Token 1 is `e`, token 2 a combining acute accent that the decoder composes with the
        // `e` before it (as a normalising tokenizer does): decoding is not append-only, and
        // the old cut at the previous length fell inside the 2-byte `é`.
        let decode = |ids: &[u32]| {
            let s: String = ids
                .iter()
                .map(|&id| match id {
                    1 => "e",
                    2 => "\u{301}",
                    _ => "x",
                })
                .collect();
            s.replace("e\u{301}", "é")
        };
        let (out, _) = stream(&[3, 1, 2, 3], decode);
        assert!(out.starts_with("xe"), "{out:?}");
        assert!(out.ends_with("éx"), "{out:?}");
    }

    #[test]
    fn a_leading_space_is_kept_by_the_context_token() {
        // SentencePiece-style: a window's first `▁` decodes to nothing, later ones to spaces.
        let decode = |ids: &[u32]| {
            let s: String = ids
                .iter()
                .map(|&id| if id == 0 { "▁a" } else { "▁b" })
                .collect();
            s.replace('▁', " ").trim_start().to_string()
        };
        let (out, _) = stream(&[0, 1, 1, 0], decode);
        assert_eq!(out, "a b b a");
    }
}
