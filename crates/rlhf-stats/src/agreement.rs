//! Agreement between annotators on categorical labels (category indices): Cohen's κ for two
//! annotators on the items both labelled, Krippendorff's α (nominal) for any number of annotators
//! with any number of labels per item. Both are `None` where they are undefined (no items, or no
//! variation at all to agree or disagree on).

/// Cohen's κ = (p_o − p_e) / (1 − p_e) of two annotators' labels of the same items, in order.
pub fn cohen_kappa(a: &[usize], b: &[usize]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n == 0 {
        return None;
    }
    let categories = a.iter().chain(b).max().map_or(0, |m| m + 1);
    let (mut count_a, mut count_b) = (vec![0.0; categories], vec![0.0; categories]);
    let mut agreed = 0.0;
    for (&x, &y) in a.iter().zip(b) {
        count_a[x] += 1.0;
        count_b[y] += 1.0;
        if x == y {
            agreed += 1.0;
        }
    }
    let n = n as f64;
    let observed = agreed / n;
    let expected: f64 = count_a.iter().zip(&count_b).map(|(x, y)| x / n * (y / n)).sum();
    (expected < 1.0).then(|| (observed - expected) / (1.0 - expected))
}

/// Krippendorff's α (nominal) = 1 − D_o / D_e over `units`, each the labels its annotators gave one
/// item; items with fewer than two labels carry no information and are left out.
pub fn krippendorff_alpha(units: &[Vec<usize>]) -> Option<f64> {
    let categories = units.iter().flatten().max().map_or(0, |m| m + 1);
    // The coincidence matrix: every ordered pair of labels within a unit, weighted 1 / (m − 1).
    let mut coincidences = vec![vec![0.0; categories]; categories];
    for unit in units.iter().filter(|unit| unit.len() >= 2) {
        let weight = 1.0 / (unit.len() - 1) as f64;
        for (i, &c) in unit.iter().enumerate() {
            for (j, &k) in unit.iter().enumerate() {
                if i != j {
                    coincidences[c][k] += weight;
                }
            }
        }
    }
    let totals: Vec<f64> = coincidences.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = totals.iter().sum();
    if n < 2.0 {
        return None;
    }
    let mut observed = 0.0;
    let mut expected = 0.0;
    for c in 0..categories {
        for k in 0..categories {
            if c != k {
                observed += coincidences[c][k];
                expected += totals[c] * totals[k];
            }
        }
    }
    (expected > 0.0).then(|| 1.0 - (n - 1.0) * observed / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohen_kappa_matches_a_worked_example() {
        // The 2×2 table [[20, 5], [10, 15]]: p_o = 0.7, p_e = 0.5, κ = 0.4.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (x, y, count) in [(0, 0, 20), (0, 1, 5), (1, 0, 10), (1, 1, 15)] {
            a.extend(std::iter::repeat_n(x, count));
            b.extend(std::iter::repeat_n(y, count));
        }
        assert!((cohen_kappa(&a, &b).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(cohen_kappa(&[1, 0, 1], &[1, 0, 1]), Some(1.0));
        assert_eq!(cohen_kappa(&[0, 0], &[0, 0]), None, "no variation: undefined");
    }

    #[test]
    fn krippendorff_alpha_matches_the_reference_example_and_bounds() {
        // Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the nominal example with
        // missing values: 4 observers, 12 units; categories 1-5 as 0-4. α = 0.743.
        let units: Vec<Vec<usize>> = vec![
            vec![0, 0, 0],
            vec![1, 1, 2, 1],
            vec![2, 2, 2, 2],
            vec![2, 2, 2, 2],
            vec![1, 1, 1, 1],
            vec![0, 1, 2, 3],
            vec![3, 3, 3, 3],
            vec![0, 0, 1, 0],
            vec![1, 1, 1, 1],
            vec![4, 4, 4],
            vec![0, 0],
            vec![2],
        ];
        let alpha = krippendorff_alpha(&units).unwrap();
        assert!((alpha - 0.743).abs() < 5e-4, "{alpha}");
        assert_eq!(krippendorff_alpha(&[vec![0, 0], vec![1, 1]]), Some(1.0));
        assert_eq!(krippendorff_alpha(&[vec![0, 0]]), None);
    }
}
