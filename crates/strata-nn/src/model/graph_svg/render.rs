//! The laid-out graph as SVG text: boxes, labels, routed edges.

use super::*;

/// Line 1 is `name (Type)`, line 2 the output shape.
pub(super) fn label_lines(v: &Vertex) -> (String, String) {
    (format!("{} ({})", v.name, v.class), v.shape.clone())
}

/// An estimate of the text's width at [`FONT`] in a sans-serif face
/// (Helvetica-like advance widths; a little generous, so text stays inside).
pub(super) fn text_width(s: &str) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.28,
            'f' | 't' | 'r' | 'I' | ' ' | '(' | ')' | '[' | ']' | '-' => 0.36,
            'm' | 'w' | 'M' | 'W' => 0.9,
            '0'..='9' => 0.58,
            c if c.is_ascii_uppercase() => 0.7,
            c if c.is_ascii() => 0.57,
            _ => 1.0,
        })
        .sum();
    em * FONT * 1.08
}

/// Text and attribute values for XML: the five special characters as
/// entities, control characters (which XML 1.0 cannot hold) as U+FFFD.
pub(super) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Fill colour of a box by the kind of layer, so a stack reads at a glance.
pub(super) fn fill(class: &str) -> &'static str {
    match class {
        "InputLayer" => "#e8e8e8",
        c if c.starts_with("Conv") || c.starts_with("DepthwiseConv") => "#dbe9f6",
        "BatchNormalization" | "LayerNormalization" => "#fdf3d0",
        "Activation" | "ReLU" | "Softmax" | "LeakyReLU" => "#e0f2e0",
        c if c.contains("Pooling") => "#ece2f4",
        "Dense" => "#fde3cf",
        "Add" | "Concatenate" | "Multiply" | "Subtract" | "Average" | "Maximum" | "Minimum"
        | "Blend" => "#f9dbe4",
        "Sequential" | "Functional" => "#d6f0f0",
        _ => "#ffffff",
    }
}

pub(super) fn num(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

pub(super) fn render(l: &Layout) -> String {
    let left = l
        .vertices
        .iter()
        .map(|v| v.x - v.width / 2.0)
        .fold(f64::INFINITY, f64::min);
    let right = l
        .vertices
        .iter()
        .map(|v| v.x + v.width / 2.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let (left, right) = if left.is_finite() {
        (left, right)
    } else {
        (0.0, 0.0)
    };
    let title_w = text_width(&l.title) * 16.0 / FONT;
    let width = ((right - left).max(title_w) + 2.0 * MARGIN).ceil();
    let dx = MARGIN - left + ((width - 2.0 * MARGIN) - (right - left)) / 2.0;
    let cx = |v: &Vertex| v.x + dx;
    let top = |r: usize| MARGIN + TITLE_H + r as f64 * (BOX_H + RANK_GAP);
    let height = ((top(l.ranks.len()) - RANK_GAP).max(top(0)) + MARGIN).ceil();
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"{FONT}\">\n",
        w = num(width),
        h = num(height)
    ));
    s.push_str(&format!("<title>{}</title>\n", xml_escape(&l.title)));
    s.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <polygon points=\"0,0 10,5 0,10\" fill=\"#555\"/></marker></defs>\n",
    );
    s.push_str(&format!(
        "<polygon class=\"background\" points=\"0,0 {w},0 {w},{h} 0,{h}\" fill=\"#ffffff\"/>\n",
        w = num(width),
        h = num(height)
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        num(MARGIN),
        num(MARGIN + 16.0),
        xml_escape(&l.title)
    ));

    // ports: where a box's edges leave its bottom and reach its top, spread
    // in the order of the vertices at their other ends
    let n = l.vertices.len();
    let mut out_port = vec![Vec::new(); l.routes.len()];
    let mut in_port = vec![Vec::new(); l.routes.len()];
    let mut leaving: Vec<Vec<(f64, usize)>> = vec![Vec::new(); n];
    let mut arriving: Vec<Vec<(f64, usize)>> = vec![Vec::new(); n];
    for (ri, r) in l.routes.iter().enumerate() {
        let p = &r.path;
        leaving[p[0]].push((l.vertices[p[1]].x, ri));
        arriving[p[p.len() - 1]].push((l.vertices[p[p.len() - 2]].x, ri));
    }
    // an edge that runs straight down keeps the middle of the box, the
    // others fan out beside it; with none straight they spread evenly
    let spread = |list: &mut Vec<(f64, usize)>, x: f64, w: f64, dest: &mut Vec<Vec<f64>>| {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = list.len() as f64;
        let step = (w / (k + 1.0)).min(18.0);
        let straight = list
            .iter()
            .enumerate()
            .map(|(i, e)| (i, (e.0 - x).abs()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|&(_, d)| d < 2.0)
            .map(|(i, _)| i as f64);
        let half = (w / 2.0 - 8.0).max(0.0);
        for (i, &(_, ri)) in list.iter().enumerate() {
            let off = match straight {
                Some(j) => (i as f64 - j) * step,
                None => (i as f64 - (k - 1.0) / 2.0) * step,
            };
            dest[ri].push(off.clamp(-half, half));
        }
    };
    for v in 0..n {
        let (x, w) = (l.vertices[v].x, l.vertices[v].width);
        spread(&mut leaving[v], x, w, &mut out_port);
        spread(&mut arriving[v], x, w, &mut in_port);
    }

    s.push_str("<g class=\"edges\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.4\">\n");
    for (ri, r) in l.routes.iter().enumerate() {
        let p = &r.path;
        let src = &l.vertices[p[0]];
        let dst = &l.vertices[p[p.len() - 1]];
        let (mut x, mut y) = (cx(src) + out_port[ri][0], top(src.rank) + BOX_H);
        let mut d = format!("M{} {}", num(x), num(y));
        for (k, &v) in p.iter().enumerate().skip(1) {
            let vx = &l.vertices[v];
            let last = k == p.len() - 1;
            let tx = if last {
                cx(vx) + in_port[ri][0]
            } else {
                cx(vx)
            };
            let ty = top(vx.rank);
            let bend = (ty - y) / 2.0;
            if (tx - x).abs() < 0.05 {
                d.push_str(&format!(" L{} {}", num(tx), num(ty)));
            } else {
                d.push_str(&format!(
                    " C{} {} {} {} {} {}",
                    num(x),
                    num(y + bend),
                    num(tx),
                    num(ty - bend),
                    num(tx),
                    num(ty)
                ));
            }
            x = tx;
            y = ty;
            if !last {
                y += BOX_H;
                d.push_str(&format!(" L{} {}", num(x), num(y)));
            }
        }
        s.push_str(&format!(
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{d}\" marker-end=\"url(#arrow)\"/>\n",
            xml_escape(&src.name),
            xml_escape(&dst.name)
        ));
    }
    s.push_str("</g>\n");

    s.push_str("<g class=\"nodes\">\n");
    for v in l.vertices.iter().filter(|v| !v.dummy) {
        let x0 = cx(v) - v.width / 2.0;
        let y0 = top(v.rank);
        let name = xml_escape(&v.name);
        let tip = [
            format!("{} ({})", v.name, v.class),
            format!("output {}", v.shape),
            format!("{} params", thousands(v.params)),
        ]
        .map(|t| xml_escape(&t))
        .join("\n");
        s.push_str(&format!("<g class=\"node\"><title>{tip}</title>\n"));
        s.push_str(&format!(
            "<rect data-name=\"{name}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"5\" \
             fill=\"{}\" stroke=\"#333\" stroke-width=\"{}\"/>\n",
            num(x0),
            num(y0),
            num(v.width),
            num(BOX_H),
            fill(&v.class),
            if v.output { "2.2" } else { "1" }
        ));
        s.push_str(&format!(
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\"><tspan font-weight=\"bold\">{name}</tspan> \
             <tspan fill=\"#555\">({})</tspan></text>\n",
            num(y0 + PAD_Y + LINE - 4.0),
            xml_escape(&v.class),
            x = num(cx(v)),
        ));
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text></g>\n",
            num(cx(v)),
            num(y0 + PAD_Y + 2.0 * LINE - 4.0),
            xml_escape(&v.shape)
        ));
    }
    s.push_str("</g>\n</svg>\n");
    s
}
