//! A small XML writer whose escaping is always right.
//!
//! Written here rather than taken from `quick-xml` or `xml-rs`: this is
//! guest code (every dependency lands in each plugin's component), and
//! plugins only write, never parse; the writer is small enough to test
//! exhaustively.
//!
//! Text and attribute values are escaped; characters XML 1.0 forbids (most
//! C0 controls, lone surrogates cannot occur in Rust strings) become U+FFFD.
//! Element and attribute names are the caller's constants and are checked in
//! debug builds.

/// Builds an XML document.
///
/// ```
/// let mut x = prism_sdk::xml::XmlWriter::new();
/// x.open("product", &[("id", "p&1")]);
/// x.element("name", "Bolts <M8>");
/// x.close();
/// assert_eq!(x.finish(), r#"<?xml version="1.0" encoding="UTF-8"?><product id="p&amp;1"><name>Bolts &lt;M8&gt;</name></product>"#);
/// ```
#[derive(Debug)]
pub struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlWriter {
    /// A document starting with the XML declaration.
    pub fn new() -> Self {
        Self {
            out: String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
            open: Vec::new(),
        }
    }

    /// Open an element with attributes.
    pub fn open(&mut self, name: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        debug_assert!(valid_name(name), "invalid XML name {name:?}");
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            debug_assert!(valid_name(k), "invalid XML attribute name {k:?}");
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v, true);
            self.out.push('"');
        }
        self.out.push('>');
        self.open.push(name);
        self
    }

    /// Close the innermost open element. Does nothing when none is open.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
        self
    }

    /// Write escaped text inside the current element.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.out, text, false);
        self
    }

    /// `<name>text</name>`.
    pub fn element(&mut self, name: &'static str, text: &str) -> &mut Self {
        self.open(name, &[]).text(text).close()
    }

    /// `<name>text</name>` when `text` is `Some`, nothing otherwise.
    pub fn element_opt(&mut self, name: &'static str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.element(name, t);
        }
        self
    }

    /// Close every open element and return the document.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// Escape `text` for XML character data (or an attribute value) into `out`.
pub fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\t' | '\n' | '\r' if attribute => out.push_str(&format!("&#{};", ch as u32)),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Escape `text` for XML and return it.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    escape_into(&mut s, text, true);
    s
}

/// Characters allowed by XML 1.0 (`Char` production).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        let mut x = XmlWriter::new();
        x.open("a", &[("t", "\"q\" 'a' <&>\n")])
            .text("1 < 2 & \"ok\"");
        let doc = x.finish();
        assert!(
            doc.ends_with(
                r#"<a t="&quot;q&quot; &apos;a&apos; &lt;&amp;&gt;&#10;">1 &lt; 2 &amp; "ok"</a>"#
            ),
            "{doc}"
        );
    }

    #[test]
    fn forbidden_characters_become_replacement() {
        assert_eq!(
            escape("a\u{0}b\u{1F}c\u{FFFE}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(escape("Grüße 🙂"), "Grüße 🙂");
    }

    #[test]
    fn finish_closes_everything() {
        let mut x = XmlWriter::new();
        x.open("a", &[])
            .open("b", &[])
            .element_opt("c", None)
            .element_opt("d", Some("x"));
        assert!(x.finish().ends_with("<a><b><d>x</d></b></a>"));
    }
}
