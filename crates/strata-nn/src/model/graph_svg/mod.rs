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

mod ordering;
mod placement;
mod ranks;
mod render;

use ordering::*;
use placement::*;
use ranks::*;
use render::*;

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

#[cfg(test)]
mod tests;
