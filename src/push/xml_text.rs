//! Text written straight into XML (the publish is written as text, not as a tree).

/// Escapes text for an XML attribute value quoted with `'`, or for character data.
pub fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // A parser turns a literal tab, newline or CR in an attribute value into a
            // space, and a CR in text into a newline (XML 1.0 §3.3.3, §2.11); a client's
            // node='&#9;…' would reach the app server as another node (found by fuzz/
            // `enable`). Character references keep them.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}
