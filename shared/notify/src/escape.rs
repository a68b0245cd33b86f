//! Text from payloads (environments, repositories, incident titles) as each channel must carry it: as the
//! words it is, never as markup the team's trusted bot would post as its own — a link with a label that hides
//! where it goes, a mass ping, reordered characters.

/// The text without the characters that hide or reorder what is shown: bidirectional controls (a
/// right-to-left override turns `exe.gpj` into `jpg.exe`), zero-width format characters and control
/// characters other than line breaks and tabs. Every channel starts from this.
pub fn plain(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(c,
                '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}')
                && (c == '\n' || c == '\t' || !c.is_control())
        })
        .collect()
}

/// Slack mrkdwn: `&`, `<` and `>` escaped as Slack documents, so no `<!channel>`, `<@U…>` or `<url|label>`
/// can be written by a payload.
pub fn slack(text: &str) -> String {
    plain(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack link's label: as [`slack`], and a `|`, which would end the address part of `<url|label>`, shown
/// as a look-alike.
pub fn slack_label(text: &str) -> String {
    slack(text).replace('|', "\u{2223}")
}

/// Markdown of a Teams Adaptive Card: the characters that make links, emphasis, code and HTML escaped with
/// a backslash (CommonMark), so `[Re-login](https://…)` stays text. A renderer that ignored the escapes
/// would show the backslashes, and still no link: `\]\(` is not `](`.
pub fn teams(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in plain(text).chars() {
        if matches!(
            c,
            '\\' | '[' | ']' | '(' | ')' | '<' | '>' | '*' | '_' | '`' | '~' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 4] = [
        "[Re-login](https://evil.example)",
        "<https://evil.example|Open>",
        "<!channel> deploy now",
        "invoice\u{202E}fdp.exe",
    ];

    #[test]
    fn slack_text_carries_no_link_mention_or_override() {
        for h in HOSTILE {
            let s = slack(h);
            assert!(!s.contains('<') && !s.contains('>'), "{s}");
            assert!(!s.contains('\u{202E}'), "{s}");
        }
        assert_eq!(slack("a & <b>"), "a &amp; &lt;b&gt;");
        assert_eq!(slack_label("a|b"), "a\u{2223}b");
    }

    #[test]
    fn teams_markdown_has_no_link_syntax_left() {
        let t = teams("[Re-login](https://evil.example)");
        assert_eq!(t, "\\[Re-login\\]\\(https://evil.example\\)");
        assert!(!t.contains("]("));
        assert_eq!(teams("plain words"), "plain words");
        assert_eq!(teams("a\u{202E}b"), "ab");
    }

    #[test]
    fn plain_keeps_line_breaks_and_drops_controls() {
        assert_eq!(plain("a\nb\tc\u{7}d\u{200B}e"), "a\nb\tcde");
    }
}
