//! Caps on text a plugin controls, wherever the host keeps it: reject,
//! retry and trap reasons, log messages and fields, `last_error` in the
//! registry, dead-letter envelopes. A plugin decides how long these are;
//! the host decides how much of them it stores.

/// The most bytes of a plugin's reject or retry reason the host keeps.
pub const MAX_REASON_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes on a character boundary, with a note of
/// how much was cut (the note is extra: the result may exceed `max` by it).
pub fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} more bytes]", &s[..cut], s.len() - cut)
}

/// Cut `s` in place to at most `max` bytes, on a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_on_a_char_boundary() {
        assert_eq!(cap("abc", 3), "abc");
        assert_eq!(cap("aéb", 2), "a… [3 more bytes]");
        let mut s = "aé".to_owned();
        truncate(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_owned();
        truncate(&mut s, 10);
        assert_eq!(s, "abc");
    }
}
