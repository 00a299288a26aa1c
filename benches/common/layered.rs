// The big workflows of the `compile_time` benchmark, written as `workflow!` input. Also
// `include!`d by `workflow-macros`' unit test `expansion_grows_linearly`, which expands the
// same workflows and prints the size of the expansion for the benchmark to read.

/// The widths of the workflow's layers, repeated.
const LAYER_WIDTHS: [usize; 7] = [1, 16, 4, 8, 3, 6, 2];

/// The workflow's nodes, in declaration order: for each, the earlier nodes it reads (node 0
/// reads the workflow's input). Exactly `n` nodes, in layers of `LAYER_WIDTHS` (fan-outs
/// from one node to 16, fan-ins from 16 to 4, 8 to 3, ...): each node reads the nodes of the
/// layer before whose index falls to it (index modulo the layer's width), and every other
/// node also one node two to five layers back; the nodes nobody reads are joined four at a
/// time into the output. Every node but the last is read by a later one.
fn layered_shape(n: usize) -> Vec<Vec<usize>> {
    let mut nodes: Vec<Vec<usize>> = vec![Vec::new()];
    let mut layers: Vec<Vec<usize>> = vec![vec![0]];
    let mut unread = std::collections::BTreeSet::from([0]);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    // How many nodes joining `unread` nodes four at a time into one takes.
    let joins = |unread: usize| unread.saturating_sub(1).div_ceil(3);
    'layers: for layer in 1.. {
        let previous = layers.last().expect("the first layer").clone();
        let width = LAYER_WIDTHS[layer % LAYER_WIDTHS.len()];
        let mut current = Vec::with_capacity(width);
        for j in 0..width {
            let mut reads: Vec<usize> = previous.iter().copied().skip(j).step_by(width).collect();
            if reads.is_empty() {
                reads.push(previous[j % previous.len()]);
            }
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let random = usize::try_from(seed >> 33).expect("31 bits fit");
            if reads.len() < 4 && layers.len() > 2 && random % 2 == 0 {
                let back = (random >> 1) % (layers.len() - 2).min(4);
                let layer = &layers[layers.len() - 2 - back];
                let read = layer[(random >> 4) % layer.len()];
                if !reads.contains(&read) {
                    reads.push(read);
                }
            }
            let unread_after =
                unread.len() + 1 - reads.iter().filter(|r| unread.contains(r)).count();
            if nodes.len() + 1 + joins(unread_after) > n {
                break 'layers;
            }
            for read in &reads {
                unread.remove(read);
            }
            unread.insert(nodes.len());
            current.push(nodes.len());
            nodes.push(reads);
        }
        layers.push(current);
    }
    while unread.len() > 1 {
        let reads: Vec<usize> = unread.iter().copied().take(4).collect();
        for read in &reads {
            unread.remove(read);
        }
        unread.insert(nodes.len());
        nodes.push(reads);
    }
    while nodes.len() < n {
        nodes.push(vec![nodes.len() - 1]);
    }
    nodes
}

/// The name node `node`'s output is bound to.
fn layered_binding(node: usize) -> String {
    format!("n{node}")
}

/// The `workflow!` input of an `n`-node layered workflow `Big(input: u64) -> u64` over the
/// steps `step1` to `step4` (the number is the step's inputs).
fn layered_workflow(n: usize) -> String {
    let nodes = layered_shape(n);
    let mut body = String::from("    pub Big(input: u64) -> u64 {\n");
    for (i, reads) in nodes.iter().enumerate() {
        let args = if i == 0 {
            "input".to_owned()
        } else {
            reads
                .iter()
                .map(|&r| layered_binding(r))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let step = reads.len().max(1);
        std::fmt::Write::write_fmt(
            &mut body,
            format_args!("        let {} = step{step}({args});\n", layered_binding(i)),
        )
        .expect("a string");
    }
    std::fmt::Write::write_fmt(
        &mut body,
        format_args!("        {}\n    }}\n", layered_binding(nodes.len() - 1)),
    )
    .expect("a string");
    body
}
