//! The report's PNG plots, drawn with `plotters` into an RGB buffer and encoded here (zlib via
//! `flate2`; no image crate). Text needs a TrueType font: the first of a few common system fonts is
//! used; without one the plots are drawn without text and the report describes them.

use std::io::Write;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::{Error, Result};

const SIZE: (u32, u32) = (900, 540);
const FONT: &str = "sans-serif";
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Whether a font was found and registered (plots then carry titles, axes and legends).
pub fn has_font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONT_FILES.iter().filter_map(|path| std::fs::read(path).ok()).any(|bytes| {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing a plot: {e}"))
}

/// A named series of (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

const COLORS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

fn range(values: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad)..(hi + pad)
}

/// Draws `panels` (one chart each, several series per chart) in a grid; `points` adds markers.
fn draw(panels: &[(String, Vec<Series>)], x_label: &str, points: bool) -> Result<Vec<u8>> {
    let font = has_font();
    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let cols = (panels.len() as f64).sqrt().ceil().max(1.0) as usize;
        let rows = panels.len().div_ceil(cols).max(1);
        for (area, (title, series)) in root.split_evenly((rows, cols)).iter().zip(panels) {
            let all = || series.iter().flat_map(|(_, s)| s.iter());
            let mut builder = ChartBuilder::on(area);
            builder.margin(10).x_label_area_size(if font { 30 } else { 0 }).y_label_area_size(if font {
                50
            } else {
                0
            });
            if font {
                builder.caption(title, (FONT, 16));
            }
            let mut chart =
                builder.build_cartesian_2d(range(all().map(|p| p.0)), range(all().map(|p| p.1))).map_err(plot_err)?;
            if font {
                chart
                    .configure_mesh()
                    .x_labels(5)
                    .y_labels(5)
                    .x_desc(x_label)
                    .label_style((FONT, 12))
                    .draw()
                    .map_err(plot_err)?;
            }
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let drawn =
                    chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(plot_err)?;
                if font && series.len() > 1 {
                    drawn.label(name.as_str()).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
                }
                if points {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(plot_err)?;
                }
            }
            if font && series.len() > 1 {
                chart
                    .configure_series_labels()
                    .label_font((FONT, 12))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(png(&buf, w, h))
}

/// Training curves: one panel per metric, x = step.
pub fn curves(panels: &[(String, Vec<Series>)]) -> Result<Vec<u8>> {
    draw(panels, "step", false)
}

/// Points joined in order (x = policy index or KL), with markers.
pub fn points(panels: &[(String, Vec<Series>)], x_label: &str) -> Result<Vec<u8>> {
    draw(panels, x_label, true)
}

/// A named series of labelled points.
pub type Labelled = (String, Vec<(f64, f64, String)>);

/// One chart of `clouds` (small unjoined markers, e.g. one per training iteration) under `labelled`
/// (large markers with their label written beside them, e.g. one per policy).
pub fn scatter(title: &str, x_label: &str, clouds: &[Series], labelled: &[Labelled]) -> Result<Vec<u8>> {
    let font = has_font();
    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let xs = clouds
            .iter()
            .flat_map(|(_, s)| s.iter().map(|p| p.0))
            .chain(labelled.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)));
        let ys = clouds
            .iter()
            .flat_map(|(_, s)| s.iter().map(|p| p.1))
            .chain(labelled.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)));
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15).x_label_area_size(if font { 35 } else { 0 }).y_label_area_size(if font { 50 } else { 0 });
        if font {
            builder.caption(title, (FONT, 18));
        }
        // Room on the right for the labels written beside the markers.
        let x = range(xs);
        let x = x.start..x.end + if font && !labelled.is_empty() { 0.12 * (x.end - x.start) } else { 0.0 };
        let mut chart = builder.build_cartesian_2d(x, range(ys)).map_err(plot_err)?;
        if font {
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(6)
                .x_desc(x_label)
                .label_style((FONT, 13))
                .draw()
                .map_err(plot_err)?;
        }
        let legend =
            |drawn: &mut plotters::chart::SeriesAnno<'_, BitMapBackend<'_>>, name: &str, color: RGBColor, size: i32| {
                if font {
                    drawn.label(name).legend(move |(x, y)| Circle::new((x + 8, y), size, color.filled()));
                }
            };
        for (i, (name, pts)) in clouds.iter().enumerate() {
            let color = COLORS[(i + 2) % COLORS.len()].mix(0.45);
            let solid = COLORS[(i + 2) % COLORS.len()];
            let drawn = chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_err)?;
            legend(drawn, name, solid, 3);
        }
        for (i, (name, pts)) in labelled.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let drawn = chart
                .draw_series(pts.iter().map(|(x, y, _)| Circle::new((*x, *y), 6, color.filled())))
                .map_err(plot_err)?;
            legend(drawn, name, color, 6);
            if font {
                chart
                    .draw_series(pts.iter().map(|(x, y, label)| {
                        EmptyElement::at((*x, *y))
                            + Text::new(label.clone(), (9, -7), (FONT, 14).into_font().color(&color))
                    }))
                    .map_err(plot_err)?;
            }
        }
        if font {
            chart
                .configure_series_labels()
                .label_font((FONT, 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(png(&buf, w, h))
}

/// Encodes 8-bit RGB pixels as a PNG.
pub fn png(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity(rgb.len() + height as usize);
    for row in rgb.chunks(width as usize * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("writing to memory");
    let idat = z.finish().expect("writing to memory");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = [width.to_be_bytes(), height.to_be_bytes()].concat();
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", &idat), (b"IEND", &[])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn png_has_signature_and_chunks() {
        let png = super::png(&[255; 2 * 2 * 3], 2, 2);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&png[12..16], b"IHDR");
        assert!(png.ends_with(&[b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    }
}
