//! The latency distribution as a PNG: one panel per mode, one cumulative curve per size
//! and pattern, latency on a log axis.

use std::path::Path;

use plotters::prelude::*;

use crate::client::Mode;
use crate::report::Run;

/// plotters draws text with a TrueType font it is given; Debian's fonts-dejavu-core has
/// one on most systems.
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register_font() -> Result<(), String> {
    let bytes = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no DejaVuSans.ttf (Debian: apt install fonts-dejavu-core)")?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "DejaVuSans.ttf is not a usable font".to_string())
}

pub fn draw(path: &Path, runs: &[Run], title: &str) -> Result<(), String> {
    register_font()?;
    let modes: Vec<Mode> = [Mode::Hibernated, Mode::Offline]
        .into_iter()
        .filter(|m| runs.iter().any(|r| r.mode == *m))
        .collect();
    let root = BitMapBackend::new(path, (900, 420 * modes.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((modes.len().max(1), 1));
    let max_ms = runs
        .iter()
        .flat_map(|r| r.latencies.last())
        .fold(1.0f64, |a, b| a.max(*b))
        * 1.2;
    for (mode, area) in modes.iter().zip(panels.iter()) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{title}: {} devices", mode.name()),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0.01f64..max_ms).log_scale(), 0f64..100f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("latency, message sent → publish received (ms)")
            .y_desc("percent of publishes")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, r) in runs.iter().filter(|r| r.mode == *mode).enumerate() {
            let n = r.latencies.len().max(1) as f64;
            let color = Palette99::pick(i).to_rgba();
            let label = match r.rate {
                Some(rate) => format!("{} users, {rate} msg/s", r.users),
                None => format!("{} users, burst of {}", r.users, r.messages),
            };
            chart
                .draw_series(LineSeries::new(
                    r.latencies
                        .iter()
                        .enumerate()
                        .map(|(k, ms)| (ms.max(0.01), (k + 1) as f64 * 100.0 / n)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
