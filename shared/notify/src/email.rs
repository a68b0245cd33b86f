//! The digest as an email: HTML made of tables and inline CSS (what Gmail and Outlook render; no script, no
//! external image), the plain text beside it, and the trend chart as an inline PNG, all in one MIME message.

use em_metrics::digest::{Digest, Point};
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use plotters::prelude::*;

use crate::{
    anomaly_line, count_lines, figure_lines, highlight_lines, notice_text, span, text, title,
    Audience, Notice,
};

/// The chart's size in pixels.
pub const CHART_WIDTH: u32 = 600;
pub const CHART_HEIGHT: u32 = 240;
/// The content id the HTML names the chart by.
pub const CHART_CID: &str = "trend-chart";

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("cannot draw the chart: {0}")]
    Chart(String),
    #[error("cannot write the message: {0}")]
    Message(String),
}

/// Deployments per period as bars and the median lead time as a line over them (each scaled to its own
/// maximum), oldest on the left. No text: the email labels it, so the chart needs no font.
pub fn chart_png(trend: &[Point]) -> Result<Vec<u8>, EmailError> {
    let (w, h) = (CHART_WIDTH, CHART_HEIGHT);
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| EmailError::Chart(e.to_string());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let n = trend.len().max(1);
        let most = trend
            .iter()
            .map(|p| p.deployments)
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let slowest = trend
            .iter()
            .filter_map(|p| p.lead_time_median_seconds)
            .fold(0.0_f64, f64::max)
            .max(1.0);
        let (left, bottom, top) = (10.0, h as f64 - 10.0, 10.0);
        let slot = (w as f64 - 20.0) / n as f64;
        let y = |v: f64| (bottom - v * (bottom - top)) as i32;
        let bar = RGBColor(37, 99, 235);
        let line = RGBColor(234, 88, 12);
        for (i, p) in trend.iter().enumerate() {
            let x0 = left + i as f64 * slot + slot * 0.2;
            let x1 = x0 + slot * 0.6;
            root.draw(&Rectangle::new(
                [
                    (x0 as i32, y(p.deployments as f64 / most)),
                    (x1 as i32, bottom as i32),
                ],
                bar.filled(),
            ))
            .map_err(|e| err(&e))?;
        }
        // The axis.
        root.draw(&PathElement::new(
            vec![
                (left as i32, bottom as i32),
                ((w - 10) as i32, bottom as i32),
            ],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| err(&e))?;
        let points: Vec<(i32, i32)> = trend
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let v = p.lead_time_median_seconds? / slowest;
                Some(((left + (i as f64 + 0.5) * slot) as i32, y(v)))
            })
            .collect();
        root.draw(&PathElement::new(points.clone(), line.stroke_width(3)))
            .map_err(|e| err(&e))?;
        for p in points {
            root.draw(&Circle::new(p, 4, line.filled()))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| EmailError::Chart(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| EmailError::Chart(e.to_string()))?;
    }
    Ok(out)
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped (team names and anomalies are the user's words), and
/// the characters that hide or reorder text dropped ([`crate::escape::plain`]).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in crate::escape::plain(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML part: tables with inline styles only. `chart_src` is where the chart is (`cid:...` in the
/// email; a file name for a preview), or `None` for no chart.
pub fn html(d: &Digest, who: &Audience, chart_src: Option<&str>) -> String {
    const CELL: &str = "padding:6px 10px;border-bottom:1px solid #e5e7eb;font-size:14px;";
    let mut rows = String::new();
    for (name, value, change) in figure_lines(d) {
        rows.push_str(&format!(
            "<tr><td style=\"{CELL}color:#374151;\">{}</td><td style=\"{CELL}font-weight:bold;color:#111827;\">{}</td><td style=\"{CELL}color:#6b7280;\">{}</td></tr>",
            escape(&name),
            escape(&value),
            escape(&change)
        ));
    }
    let counts: String = count_lines(d)
        .iter()
        .map(|l| {
            format!(
                "<p style=\"margin:4px 0;font-size:14px;color:#374151;\">{}</p>",
                escape(l)
            )
        })
        .collect();
    let anomalies = if d.anomalies.is_empty() {
        String::new()
    } else {
        let items: String = d
            .anomalies
            .iter()
            .map(|a| {
                format!(
                    "<li style=\"margin:2px 0;\">{}</li>",
                    escape(&anomaly_line(a, d.period))
                )
            })
            .collect();
        format!("<h2 style=\"font-size:16px;color:#b45309;margin:16px 0 4px;\">Look at</h2><ul style=\"margin:0;padding-left:20px;font-size:14px;color:#92400e;\">{items}</ul>")
    };
    let named: String = highlight_lines(d)
        .into_iter()
        .map(|(heading, named)| {
            let items: String = named
                .iter()
                .map(|n| {
                    let label = match &n.url {
                        Some(u) => format!(
                            "<a href=\"{}\" style=\"color:#1d4ed8;\">{}</a>",
                            escape(u),
                            escape(&n.label)
                        ),
                        None => escape(&n.label),
                    };
                    format!("<li style=\"margin:2px 0;\">{label}: {}</li>", escape(&n.took))
                })
                .collect();
            format!("<h2 style=\"font-size:16px;color:#111827;margin:16px 0 4px;\">{}</h2><ul style=\"margin:0;padding-left:20px;font-size:14px;color:#374151;\">{items}</ul>", escape(heading))
        })
        .collect();
    let chart = chart_src.map_or(String::new(), |src| {
        format!(
            "<h2 style=\"font-size:16px;color:#111827;margin:16px 0 4px;\">The last {} periods</h2>\
             <p style=\"margin:0 0 6px;font-size:12px;color:#6b7280;\">Bars: deployments. Line: median lead time.</p>\
             <img src=\"{}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" alt=\"Deployments and median lead time over the last {} periods\" style=\"display:block;border:0;max-width:100%;height:auto;\">",
            d.trend.len(),
            escape(src),
            d.trend.len()
        )
    });
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"margin:0;padding:0;background:#f3f4f6;\">\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f3f4f6;\"><tr><td align=\"center\" style=\"padding:24px 8px;\">\
         <table role=\"presentation\" width=\"640\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:640px;background:#ffffff;border-radius:6px;font-family:Arial,Helvetica,sans-serif;\"><tr><td style=\"padding:20px;\">\
         <h1 style=\"font-size:20px;color:#111827;margin:0 0 4px;\">{title}</h1>\
         <p style=\"margin:0 0 16px;font-size:13px;color:#6b7280;\">{span}</p>\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse:collapse;\">{rows}</table>\
         <div style=\"margin-top:16px;\">{counts}</div>{anomalies}{named}{chart}\
         <p style=\"margin:20px 0 0;font-size:12px;color:#9ca3af;\">Sent by EM Agent. Definitions: docs/metrics.md.</p>\
         </td></tr></table></td></tr></table></body></html>\n",
        title = escape(&title(d, who)),
        span = escape(&span(d)),
    )
}

/// The whole email: `multipart/related` holding the alternative text and HTML parts and the inline chart.
pub fn message(
    d: &Digest,
    who: &Audience,
    from: &str,
    to: &[String],
) -> Result<Vec<u8>, EmailError> {
    let png = chart_png(&d.trend)?;
    let alternative = MimePart::new(
        "multipart/alternative",
        vec![
            MimePart::new("text/plain", text(d, who)),
            MimePart::new("text/html", html(d, who, Some(&format!("cid:{CHART_CID}")))),
        ],
    );
    let chart = MimePart::new("image/png", png).inline().cid(CHART_CID);
    MessageBuilder::new()
        .from(from.to_string())
        .to(to.to_vec())
        .subject(title(d, who))
        .body(MimePart::new("multipart/related", vec![alternative, chart]))
        .write_to_vec()
        .map_err(|e| EmailError::Message(e.to_string()))
}

/// A notice as an email: plain text, its title the subject.
pub fn notice_message(n: &Notice, from: &str, to: &[String]) -> Result<Vec<u8>, EmailError> {
    MessageBuilder::new()
        .from(from.to_string())
        .to(to.to_vec())
        .subject(crate::escape::plain(&n.title))
        .text_body(notice_text(n))
        .write_to_vec()
        .map_err(|e| EmailError::Message(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: i64, deployments: u64, lead: Option<f64>) -> Point {
        Point {
            from: i,
            deployments,
            lead_time_median_seconds: lead,
        }
    }

    /// The PNG's pixels, decoded.
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(png_bytes);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn the_chart_draws_bars_and_a_line() {
        let trend: Vec<Point> = (0..12)
            .map(|i| point(i, (i as u64 % 5) + 1, Some(3_600.0 * (i as f64 + 1.0))))
            .collect();
        let (w, h, px) = decode(&chart_png(&trend).unwrap());
        assert_eq!((w, h), (CHART_WIDTH, CHART_HEIGHT));
        let has = |rgb: [u8; 3]| px.chunks(3).any(|p| p == rgb);
        assert!(has([37, 99, 235]), "bars");
        assert!(has([234, 88, 12]), "the lead time line");
        // An empty trend is a blank chart, not an error.
        let (_, _, blank) = decode(&chart_png(&[]).unwrap());
        assert!(!blank.chunks(3).any(|p| p == [37, 99, 235]));
    }

    #[test]
    fn html_escapes_what_users_name() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
