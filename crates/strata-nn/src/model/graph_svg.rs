//! `graph_svg`: the model's graph as an SVG picture, laid out here (no
//! graphviz), the way `strata graph` draws it.
//!
//! A simplified Sugiyama layout: each layer application (and each model
//! input) is a box on a rank, its longest path from the inputs; an edge
//! that spans several ranks gets a thin invisible "dummy" box on each rank it
//! crosses, so a residual shortcut is routed beside the boxes, not through
//! them. Boxes are ordered within their rank by barycenter sweeps (the order
//! with the fewest crossings is kept), then placed left to right as close to
//! their neighbours as the order and spacing allow: each sweep solves that
//! placement exactly, as an isotonic regression. Boxes on a longest path
//! pull hardest, then boxes on shorter branches, then dummies, so a ResNet's
//! main path runs straight and its shortcuts bow out to the side, while
//! branches of equal length (the Blend head's two Dense) sit symmetrically.
//! An input off the longest paths, and what only it feeds, sits just above
//! where it joins the graph.

use super::{Model, Source};
use crate::error::batch_shape;
use crate::explain::thousands;

/// Text size of the boxes (px).
const FONT: f64 = 13.0;
/// Height of one text line.
const LINE: f64 = 17.0;
/// Box padding around the text.
const PAD_X: f64 = 12.0;
const PAD_Y: f64 = 6.0;
/// Height of every box (two lines of text).
const BOX_H: f64 = 2.0 * LINE + 2.0 * PAD_Y;
/// Vertical room between ranks, for the arrows.
const RANK_GAP: f64 = 36.0;
/// Horizontal room between neighbours on a rank.
const GAP: f64 = 28.0;
/// Width a long edge takes on a rank it crosses.
const DUMMY_W: f64 = 10.0;
/// Margin around the picture, and room for the title above it.
const MARGIN: f64 = 20.0;
const TITLE_H: f64 = 30.0;
/// Smallest box.
const MIN_BOX_W: f64 = 110.0;
/// How hard a dummy (a point of a long edge) pulls, against the 1 of a box
/// on a longest path.
const DUMMY_WEIGHT: f64 = 0.0005;
/// A box off the longest paths pulls this much less per box its longest
/// path falls short by (never below [`MIN_BOX_WEIGHT`]): a short branch,
/// such as a ResNet's downsample shortcut, gives way to the main path.
const SHORT_PATH_FACTOR: f64 = 0.05;
const MIN_BOX_WEIGHT: f64 = 0.002;

/// One thing on a rank: a box (an input or a node) or a point of a long edge.
#[derive(Debug, Clone)]
struct Vertex {
    /// Layer name (or input name); empty for a dummy.
    name: String,
    /// Keras class (`InputLayer` for an input).
    class: String,
    /// Output shape as the summary writes it.
    shape: String,
    params: usize,
    dummy: bool,
    /// How hard it holds its place against its neighbours (see `place_x`).
    weight: f64,
    /// A model output: drawn with a thicker border.
    output: bool,
    rank: usize,
    width: f64,
    x: f64,
}

/// A graph edge as drawn: its vertices from the source box, through the
/// dummies, to the target box.
#[derive(Debug, Clone)]
struct Route {
    path: Vec<usize>,
}

/// The placed graph: vertices with ranks and x centres, routes, and ranks'
/// left-to-right orders.
#[derive(Debug, Clone)]
struct Layout {
    title: String,
    vertices: Vec<Vertex>,
    routes: Vec<Route>,
    ranks: Vec<Vec<usize>>,
}

impl Model {
    /// The model's graph as a standalone SVG document: one box per input and
    /// layer application (name, type, output shape), arrows for the edges,
    /// branches side by side (see the module doc for the layout).
    pub fn graph_svg(&self) -> String {
        render(&layout(self))
    }
}

/// The boxes and the edges of the model's graph, before any placement.
fn graph_of(m: &Model) -> (Vec<Vertex>, Vec<(usize, usize)>) {
    let n_in = m.inputs.len();
    let vid = |s: &Source| match *s {
        Source::Input(i) => i,
        Source::Node(i) => n_in + i,
    };
    let mut vertices: Vec<Vertex> = m
        .inputs
        .iter()
        .map(|(name, shape)| Vertex {
            name: name.clone(),
            class: "InputLayer".into(),
            shape: batch_shape(shape),
            params: 0,
            dummy: false,
            weight: 1.0,
            output: false,
            rank: 0,
            width: 0.0,
            x: 0.0,
        })
        .collect();
    let mut edges = Vec::new();
    for (i, n) in m.nodes.iter().enumerate() {
        let layer = &m.layers[n.layer];
        vertices.push(Vertex {
            name: layer.name().to_string(),
            class: layer.class_name().to_string(),
            shape: batch_shape(&n.output_shape),
            params: layer.param_count(),
            dummy: false,
            weight: 1.0,
            output: false,
            rank: 0,
            width: 0.0,
            x: 0.0,
        });
        for s in &n.inputs {
            edges.push((vid(s), n_in + i));
        }
    }
    for o in &m.outputs {
        if let Some(v) = vertices.get_mut(vid(o)) {
            v.output = true;
        }
    }
    for v in &mut vertices {
        let (top, bottom) = label_lines(v);
        v.width = (text_width(&top) + 2.0 * PAD_X)
            .max(text_width(&bottom) + 2.0 * PAD_X)
            .max(MIN_BOX_W)
            .ceil();
    }
    (vertices, edges)
}

/// For each box, the number of edges on the longest input-to-output path
/// through it.
fn longest_through(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    // vertex ids are topological (inputs, then nodes in order): one pass
    // forwards gives each box's longest path above it, one backwards below
    let mut above = vec![0usize; n];
    let mut below = vec![0usize; n];
    let mut sorted = edges.to_vec();
    sorted.sort_unstable_by_key(|&(_, b)| b);
    for &(a, b) in &sorted {
        above[b] = above[b].max(above[a] + 1);
    }
    sorted.sort_unstable_by_key(|&(a, _)| std::cmp::Reverse(a));
    for &(a, b) in &sorted {
        below[a] = below[a].max(below[b] + 1);
    }
    (0..n).map(|v| above[v] + below[v]).collect()
}

/// Ranks: a node's longest path from the inputs. What hangs off a side
/// input (one not on a longest path of the graph: a second input joining
/// deep in the graph, and the layers fed only by it) sits just above where
/// it joins instead of at the top.
fn assign_ranks(vertices: &mut [Vertex], edges: &[(usize, usize)], n_in: usize, through: &[usize]) {
    let n = vertices.len();
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        preds[b].push(a);
        succs[a].push(b);
    }
    for v in n_in..n {
        vertices[v].rank = preds[v]
            .iter()
            .map(|&p| vertices[p].rank + 1)
            .max()
            .unwrap_or(0);
    }
    let longest = through.iter().copied().max().unwrap_or(0);
    let mut main = vec![false; n];
    for v in 0..n {
        main[v] = if v < n_in {
            through[v] == longest
        } else {
            preds[v].iter().any(|&p| main[p])
        };
    }
    for v in (0..n).rev() {
        if !main[v] {
            if let Some(r) = succs[v].iter().map(|&c| vertices[c].rank).min() {
                vertices[v].rank = r.saturating_sub(1).max(vertices[v].rank);
            }
        }
    }
}

/// Box weights: 1 on a longest path of the graph (counted in boxes), less
/// for a box whose longest path through it holds fewer boxes.
fn assign_weights(vertices: &mut [Vertex], through: &[usize]) {
    let longest = through.iter().copied().max().unwrap_or(0);
    for (v, &t) in vertices.iter_mut().zip(through) {
        let short = (longest - t).min(64) as i32;
        v.weight = SHORT_PATH_FACTOR.powi(short).max(MIN_BOX_WEIGHT);
    }
}

fn layout(m: &Model) -> Layout {
    let (mut vertices, edges) = graph_of(m);
    let through = longest_through(vertices.len(), &edges);
    assign_ranks(&mut vertices, &edges, m.inputs.len(), &through);
    assign_weights(&mut vertices, &through);
    // long edges become chains through one dummy per rank crossed
    let mut routes = Vec::with_capacity(edges.len());
    for &(a, b) in &edges {
        let mut path = vec![a];
        for r in vertices[a].rank + 1..vertices[b].rank {
            vertices.push(Vertex {
                name: String::new(),
                class: String::new(),
                shape: String::new(),
                params: 0,
                dummy: true,
                weight: DUMMY_WEIGHT,
                output: false,
                rank: r,
                width: DUMMY_W,
                x: 0.0,
            });
            path.push(vertices.len() - 1);
        }
        path.push(b);
        routes.push(Route { path });
    }
    let n_ranks = vertices.iter().map(|v| v.rank + 1).max().unwrap_or(0);
    let mut ranks: Vec<Vec<usize>> = vec![Vec::new(); n_ranks];
    for (i, v) in vertices.iter().enumerate() {
        ranks[v.rank].push(i);
    }
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); vertices.len()];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); vertices.len()];
    for r in &routes {
        for w in r.path.windows(2) {
            down[w[0]].push(w[1]);
            up[w[1]].push(w[0]);
        }
    }
    order_ranks(&mut ranks, &up, &down, vertices.len());
    place_x(&mut vertices, &ranks, &up, &down);
    Layout {
        title: m.name().to_string(),
        vertices,
        routes,
        ranks,
    }
}

/// Crossings between the segments joining rank `r` to rank `r + 1`.
fn crossings(ranks: &[Vec<usize>], down: &[Vec<usize>], pos: &[usize], r: usize) -> usize {
    let mut segs: Vec<(usize, usize)> = ranks[r]
        .iter()
        .flat_map(|&a| down[a].iter().map(move |&b| (pos[a], pos[b])))
        .collect();
    segs.sort_unstable();
    let mut n = 0;
    for (i, &(a1, b1)) in segs.iter().enumerate() {
        for &(a2, b2) in &segs[i + 1..] {
            if a2 > a1 && b2 < b1 {
                n += 1;
            }
        }
    }
    n
}

fn total_crossings(ranks: &[Vec<usize>], down: &[Vec<usize>], pos: &[usize]) -> usize {
    (0..ranks.len().saturating_sub(1))
        .map(|r| crossings(ranks, down, pos, r))
        .sum()
}

fn positions(ranks: &[Vec<usize>], n: usize) -> Vec<usize> {
    let mut pos = vec![0; n];
    for rank in ranks {
        for (i, &v) in rank.iter().enumerate() {
            pos[v] = i;
        }
    }
    pos
}

/// Orders each rank to reduce crossings: barycenter sweeps down and up,
/// keeping the best order seen (ties keep the current order, so a graph
/// already drawn without crossings stays as built).
fn order_ranks(ranks: &mut [Vec<usize>], up: &[Vec<usize>], down: &[Vec<usize>], n: usize) {
    let mut pos = positions(ranks, n);
    let mut best = ranks.to_vec();
    let mut best_crossings = total_crossings(ranks, down, &pos);
    for sweep in 0..12 {
        if best_crossings == 0 {
            break;
        }
        let downward = sweep % 2 == 0;
        let order: Vec<usize> = if downward {
            (1..ranks.len()).collect()
        } else {
            (0..ranks.len().saturating_sub(1)).rev().collect()
        };
        for r in order {
            let nbrs = if downward { up } else { down };
            let mut keyed: Vec<(f64, usize)> = ranks[r]
                .iter()
                .map(|&v| {
                    let k = if nbrs[v].is_empty() {
                        pos[v] as f64
                    } else {
                        nbrs[v].iter().map(|&u| pos[u] as f64).sum::<f64>() / nbrs[v].len() as f64
                    };
                    (k, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            ranks[r] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in ranks[r].iter().enumerate() {
                pos[v] = i;
            }
        }
        let c = total_crossings(ranks, down, &pos);
        if c < best_crossings {
            best_crossings = c;
            best = ranks.to_vec();
        }
    }
    ranks.clone_from_slice(&best);
}

/// Weighted isotonic regression with gaps: the x centres, in this order and
/// at least `gaps[i]` apart, that minimise `Σ w (x - want)²` (pool adjacent
/// violators on `x - offset`).
fn place_in_order(want: &[f64], weight: &[f64], gaps: &[f64]) -> Vec<f64> {
    let mut offset = vec![0.0; want.len()];
    for i in 1..want.len() {
        offset[i] = offset[i - 1] + gaps[i - 1];
    }
    // blocks: (sum of weights, weighted sum of targets, count)
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
    for i in 0..want.len() {
        blocks.push((weight[i], weight[i] * (want[i] - offset[i]), 1));
        while blocks.len() > 1 {
            let (w1, s1, _) = blocks[blocks.len() - 1];
            let (w0, s0, _) = blocks[blocks.len() - 2];
            if s0 / w0 <= s1 / w1 {
                break;
            }
            let (w, s, c) = blocks.pop().unwrap_or((w1, s1, 1));
            if let Some(last) = blocks.last_mut() {
                last.0 += w;
                last.1 += s;
                last.2 += c;
            }
        }
    }
    let mut x = Vec::with_capacity(want.len());
    for (w, s, c) in blocks {
        for _ in 0..c {
            x.push(s / w + offset[x.len()]);
        }
    }
    x
}

/// X centres: each rank packed in its order, then sweeps pull every vertex
/// toward the weighted mean of its neighbours on the rank before it.
fn place_x(vertices: &mut [Vertex], ranks: &[Vec<usize>], up: &[Vec<usize>], down: &[Vec<usize>]) {
    let gap = |a: &Vertex, b: &Vertex| {
        (a.width + b.width) / 2.0 + if a.dummy && b.dummy { GAP / 2.0 } else { GAP }
    };
    for rank in ranks {
        let mut x = 0.0;
        for (i, &v) in rank.iter().enumerate() {
            if i > 0 {
                x += gap(&vertices[rank[i - 1]], &vertices[v]);
            }
            vertices[v].x = x;
        }
        let shift = x / 2.0;
        for &v in rank {
            vertices[v].x -= shift;
        }
    }
    for sweep in 0..24 {
        let downward = sweep % 2 == 0;
        let order: Vec<usize> = if downward {
            (1..ranks.len()).collect()
        } else {
            (0..ranks.len().saturating_sub(1)).rev().collect()
        };
        let nbrs = if downward { up } else { down };
        for r in order {
            let rank = &ranks[r];
            let want: Vec<f64> = rank
                .iter()
                .map(|&v| {
                    let (mut s, mut w) = (0.0, 0.0);
                    for &u in &nbrs[v] {
                        let k = vertices[u].weight;
                        s += k * vertices[u].x;
                        w += k;
                    }
                    if w > 0.0 {
                        s / w
                    } else {
                        vertices[v].x
                    }
                })
                .collect();
            let weight: Vec<f64> = rank.iter().map(|&v| vertices[v].weight).collect();
            let gaps: Vec<f64> = rank
                .windows(2)
                .map(|p| gap(&vertices[p[0]], &vertices[p[1]]))
                .collect();
            let xs = place_in_order(&want, &weight, &gaps);
            for (&v, x) in rank.iter().zip(xs) {
                vertices[v].x = x;
            }
        }
    }
}

/// Line 1 is `name (Type)`, line 2 the output shape.
fn label_lines(v: &Vertex) -> (String, String) {
    (format!("{} ({})", v.name, v.class), v.shape.clone())
}

/// An estimate of the text's width at [`FONT`] in a sans-serif face
/// (Helvetica-like advance widths; a little generous, so text stays inside).
fn text_width(s: &str) -> f64 {
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
fn xml_escape(s: &str) -> String {
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
fn fill(class: &str) -> &'static str {
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

fn num(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

fn render(l: &Layout) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{ActivationLayer, Add, BatchNormalization, Conv2D, Dense};
    use crate::model::model_from_spec;
    use crate::{Activation, Layer};
    use serde_json::json;

    /// A tiny well-formedness check: tags balance, attribute values are
    /// quoted, and every `&` starts a known entity.
    fn check_xml(s: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        let check_text = |t: &str| {
            let mut parts = t.split('&');
            parts.next();
            for p in parts {
                let ok = ["amp;", "lt;", "gt;", "quot;", "apos;"]
                    .iter()
                    .any(|e| p.starts_with(e))
                    || (p.starts_with('#') && p.contains(';'));
                assert!(ok, "bad entity near &{}", &p[..p.len().min(10)]);
            }
            assert!(!t.contains('>'), "raw > in text: {t}");
        };
        while let Some(i) = rest.find('<') {
            check_text(&rest[..i]);
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("<?") {
                let e = r.find("?>").expect("unclosed <?");
                rest = &r[e + 2..];
                continue;
            }
            let e = rest.find('>').expect("unclosed tag");
            let tag = &rest[1..e];
            rest = &rest[e + 1..];
            assert!(!tag.contains('<'), "< inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched </{name}>"
                );
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().expect("empty tag");
            // attributes: name="value" pairs, values free of < and with good entities
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs.find("=\"").expect("attribute without =\"");
                assert!(!attrs[..eq].trim().contains(' '), "bad attribute in {tag}");
                let after = &attrs[eq + 2..];
                let close = after.find('"').expect("unclosed attribute value");
                check_text(&after[..close]);
                attrs = after[close + 1..].trim_start();
            }
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        check_text(rest);
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert!(rest.trim().is_empty());
    }

    fn attr(tag: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let i = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
        let j = tag[i..].find('"').unwrap();
        tag[i..i + j].parse().unwrap()
    }

    /// (centre x, top y) of the box drawn for `name` (its first, if shared).
    fn box_of(svg: &str, name: &str) -> (f64, f64) {
        let key = format!("<rect data-name=\"{name}\"");
        let i = svg.find(&key).unwrap_or_else(|| panic!("no box {name}"));
        let tag = &svg[i..i + svg[i..].find('>').unwrap()];
        (attr(tag, "x") + attr(tag, "width") / 2.0, attr(tag, "y"))
    }

    fn blend_head() -> Model {
        model_from_spec(
            &json!({
              "name": "blend_head",
              "inputs": {"tokens": [512, 768]},
              "layers": [
                {"name": "start_a", "type": "Dense", "units": 1, "inputs": ["tokens"]},
                {"name": "start_b", "type": "Dense", "units": 1, "inputs": ["tokens"]},
                {"name": "mix", "type": "Blend", "inputs": ["start_a", "start_b"]},
                {"name": "flat", "type": "Reshape", "target_shape": [512], "inputs": ["mix"]},
                {"name": "probs", "type": "Softmax", "inputs": ["flat"]}
              ],
              "outputs": ["probs"]
            }),
            0,
        )
        .unwrap()
    }

    #[test]
    fn blend_head_branches_side_by_side() {
        let svg = blend_head().graph_svg();
        check_xml(&svg);
        assert!(svg.starts_with("<?xml"));
        // 1 input + 5 layers; tokens->a, tokens->b, a->mix, b->mix, mix->flat, flat->probs
        assert_eq!(svg.matches("<rect").count(), 6, "{svg}");
        assert_eq!(svg.matches("<path").count(), 6, "{svg}");
        assert_eq!(svg.matches("marker-end=").count(), 6);
        assert_eq!(svg.matches("data-to=\"mix\"").count(), 2);
        for name in ["tokens", "start_a", "start_b", "mix", "flat", "probs"] {
            assert!(svg.contains(&format!(">{name}</tspan>")), "{name}");
        }
        assert!(svg.contains("(None, 512, 768)") && svg.contains("(Blend)"));
        let (ax, ay) = box_of(&svg, "start_a");
        let (bx, by) = box_of(&svg, "start_b");
        assert_eq!(ay, by, "the branches share a rank");
        assert!((ax - bx).abs() > 100.0, "side by side: {ax} {bx}");
        let (tx, ty) = box_of(&svg, "tokens");
        let (mx, my) = box_of(&svg, "mix");
        assert!(ty < ay && ay < my);
        // the input above the middle of its branches, the merge below it
        assert!((tx - (ax + bx) / 2.0).abs() < 1.0, "{tx} {ax} {bx}");
        assert!((mx - tx).abs() < 1.0, "{mx} {tx}");
        let svg_tag = &svg[svg.find("<svg").unwrap()..];
        let w = attr(&svg_tag[..svg_tag.find('>').unwrap()], "width");
        assert!(w > 300.0 && w < 800.0, "{w}");
    }

    #[test]
    fn names_are_escaped() {
        let mut m = Model::functional("a&b <graph>", 0);
        let x = m.input("in\"put", &[4]).unwrap();
        let y = m.apply(Dense::new(2).named("d<1>&'q'"), &[x]).unwrap();
        m.set_outputs(&[y]).unwrap();
        let svg = m.graph_svg();
        check_xml(&svg);
        assert!(svg.contains("d&lt;1&gt;&amp;&apos;q&apos;"), "{svg}");
        assert!(svg.contains("in&quot;put"), "{svg}");
        assert!(
            svg.contains("<title>a&amp;b &lt;graph&gt;</title>"),
            "{svg}"
        );
        assert!(!svg.contains("d<1>"));
    }

    #[test]
    fn sequential_is_one_column() {
        let mut m = Model::sequential("stack", &[28, 28, 1], 0);
        m.add(Conv2D::new(8, (3, 3))).unwrap();
        m.add(BatchNormalization::new()).unwrap();
        m.add(ActivationLayer::new(Activation::Relu)).unwrap();
        m.add(crate::layers::Flatten::new()).unwrap();
        m.add(Dense::new(10)).unwrap();
        let svg = m.graph_svg();
        check_xml(&svg);
        assert_eq!(svg.matches("<rect").count(), 6);
        assert_eq!(svg.matches("<path").count(), 5);
        let names = [
            "input_layer",
            "conv2d",
            "batch_normalization",
            "activation",
            "flatten",
            "dense",
        ];
        let boxes: Vec<(f64, f64)> = names.iter().map(|n| box_of(&svg, n)).collect();
        for w in boxes.windows(2) {
            assert!((w[0].0 - w[1].0).abs() < 0.01, "one column: {boxes:?}");
            assert!(w[1].1 > w[0].1, "top to bottom: {boxes:?}");
        }
        // straight arrows: no curve in a chain
        assert!(!svg.contains(" C"), "{svg}");
    }

    /// A residual stack shaped like the zoo's resnet18 (same layers and
    /// names; the zoo itself is not a dependency of this crate).
    fn resnet18_like(input: usize) -> Model {
        fn conv(name: &str, f: usize, k: usize, s: usize) -> Conv2D {
            Conv2D::new(f, (k, k))
                .strides(s)
                .padding(if k == 1 {
                    strata_core::ops::Padding::Valid
                } else {
                    strata_core::ops::Padding::symmetric(k / 2)
                })
                .use_bias(false)
                .named(name)
        }
        fn relu(name: &str) -> ActivationLayer {
            let mut r = ActivationLayer::new(Activation::Relu);
            r.set_name(name);
            r
        }
        let mut m = Model::functional("resnet18", 0);
        let i = m.input("input_layer", &[input, input, 3]).unwrap();
        let mut x = m.apply(conv("conv1", 64, 7, 2), &[i]).unwrap();
        x = m
            .apply(BatchNormalization::new().named("bn1"), &[x])
            .unwrap();
        x = m.apply(relu("relu"), &[x]).unwrap();
        let mut c = 64;
        for stage in 0..4 {
            for b in 0..2 {
                let p = |s: &str| format!("layer{}.{b}.{s}", stage + 1);
                let planes = 64 << stage;
                let s = if stage > 0 && b == 0 { 2 } else { 1 };
                let mut y = m.apply(conv(&p("conv1"), planes, 3, s), &[x]).unwrap();
                y = m
                    .apply(BatchNormalization::new().named(&p("bn1")), &[y])
                    .unwrap();
                y = m.apply(relu(&p("relu1")), &[y]).unwrap();
                y = m.apply(conv(&p("conv2"), planes, 3, 1), &[y]).unwrap();
                y = m
                    .apply(BatchNormalization::new().named(&p("bn2")), &[y])
                    .unwrap();
                let short = if s != 1 || c != planes {
                    let d = m
                        .apply(conv(&p("downsample.0"), planes, 1, s), &[x])
                        .unwrap();
                    m.apply(BatchNormalization::new().named(&p("downsample.1")), &[d])
                        .unwrap()
                } else {
                    x
                };
                let mut add = Add::new();
                add.set_name(&p("add"));
                let sum = m.apply(add, &[y, short]).unwrap();
                x = m.apply(relu(&p("relu")), &[sum]).unwrap();
                c = planes;
            }
        }
        x = m
            .apply(
                crate::layers::GlobalAveragePooling2D::new(false).named("avgpool"),
                &[x],
            )
            .unwrap();
        x = m.apply(Dense::new(10).named("fc"), &[x]).unwrap();
        m.set_outputs(&[x]).unwrap();
        m
    }

    #[test]
    fn residual_adds_have_two_arrows_and_shortcuts_go_round() {
        let m = resnet18_like(32);
        let l = layout(&m);
        let svg = render(&l);
        check_xml(&svg);
        let boxes = m.inputs.len() + m.nodes.len();
        assert_eq!(svg.matches("<rect").count(), boxes);
        let edges: usize = m.nodes.iter().map(|n| n.inputs.len()).sum();
        assert_eq!(svg.matches("<path").count(), edges);
        assert_eq!(svg.matches("data-to=\"layer1.0.add\"").count(), 2);
        assert_eq!(svg.matches("data-to=\"layer2.0.add\"").count(), 2);
        // the main path runs straight down the middle, block after block
        let (x1, _) = box_of(&svg, "layer1.0.conv1");
        let (x2, _) = box_of(&svg, "layer3.1.conv2");
        let (xa, _) = box_of(&svg, "layer4.1.add");
        assert!(
            (x1 - x2).abs() < 8.0 && (x1 - xa).abs() < 8.0,
            "{x1} {x2} {xa}"
        );
        // no dummy (a point of a long edge) overlaps a box on its rank
        for rank in &l.ranks {
            for w in rank.windows(2) {
                let (a, b) = (&l.vertices[w[0]], &l.vertices[w[1]]);
                assert!(b.x - a.x >= (a.width + b.width) / 2.0 + GAP / 2.0 - 1e-6);
            }
        }
    }

    #[test]
    fn isotonic_placement_keeps_order_and_gaps() {
        let x = place_in_order(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0], &[10.0, 10.0]);
        assert_eq!(x, vec![-10.0, 0.0, 10.0]);
        let x = place_in_order(&[5.0, 100.0], &[1.0, 1.0], &[10.0]);
        assert_eq!(x, vec![5.0, 100.0]);
        let x = place_in_order(&[0.0, 0.0], &[1.0, 0.0001], &[10.0]);
        assert!(x[0].abs() < 0.01 && (x[1] - 10.0).abs() < 0.01, "{x:?}");
    }
}
