//! `bench_report --plot FILE.svg`: the per-layer table as stacked bars.
//!
//! Two panels (a hit, a write), since their scales differ tenfold. In each,
//! per row count, one bar stacks the four layers' own costs (each measured
//! alone over the instant service) and the bar beside it is the assembled
//! stack's own cost, so a reader sees at a glance whether the parts add up.

use plotters::prelude::*;

/// One panel's data: per row count, each layer's own cost and the
/// assembled stack's, in nanoseconds.
pub struct Panel {
    /// "hit" or "write".
    pub title: String,
    /// (row count, the four layers' own costs, the assembled stack's).
    pub groups: Vec<(usize, [f64; 4], f64)>,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const ASSEMBLED: RGBColor = RGBColor(120, 120, 120);

/// Draw `panels` side by side into an SVG file at `path`.
pub fn stacked_bars(
    path: &str,
    layers: &[&str; 4],
    panels: &[Panel],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (520 * panels.len() as u32, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        let top = panel
            .groups
            .iter()
            .map(|(_, parts, whole)| parts.iter().map(|p| p.max(0.0)).sum::<f64>().max(*whole))
            .fold(1.0, f64::max)
            * 1.15;
        let width = panel.groups.len() as f64 * 3.0;
        let labels: Vec<String> = panel
            .groups
            .iter()
            .map(|(rows, _, _)| format!("{rows} row{}", if *rows == 1 { "" } else { "s" }))
            .collect();
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{}: own cost per call (ns)", panel.title),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..width, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(panel.groups.len() * 2 + 1)
            .x_label_formatter(&|x| {
                // A label under the middle of each group.
                let group = (*x / 3.0).floor() as usize;
                let within = *x - group as f64 * 3.0;
                if (within - 1.0).abs() < 0.26 {
                    labels.get(group).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("ns")
            .draw()?;
        for (layer, colour) in COLOURS.iter().enumerate() {
            let bars = panel.groups.iter().enumerate().map(|(g, (_, parts, _))| {
                let x0 = g as f64 * 3.0 + 0.2;
                let below: f64 = parts[..layer].iter().map(|p| p.max(0.0)).sum();
                let height = parts[layer].max(0.0);
                Rectangle::new([(x0, below), (x0 + 1.2, below + height)], colour.filled())
            });
            chart
                .draw_series(bars)?
                .label(layers[layer])
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        let assembled = panel.groups.iter().enumerate().map(|(g, (_, _, whole))| {
            let x0 = g as f64 * 3.0 + 1.5;
            Rectangle::new([(x0, 0.0), (x0 + 1.2, whole.max(0.0))], ASSEMBLED.filled())
        });
        chart
            .draw_series(assembled)?
            .label("assembled stack")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], ASSEMBLED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
