//! The risk tier: every signal the policy (and the playbook's floors) recognises, the highest
//! one wins, and each is kept as a reason.

use super::classify::Classification;
use super::decision::{Signal, TierReason};
use super::facts::ChangeFacts;
use super::model::{Policy, RiskTier, ShiftThreshold};

/// The playbook's matrix for metric shifts, used when the policy reads metric files but sets
/// no threshold of its own: over 5 % is high, over 1 % medium, within ±1 % low.
const DEFAULT_SHIFTS: [(RiskTier, f64); 2] = [(RiskTier::High, 5.0), (RiskTier::Medium, 1.0)];

/// Slack when comparing a shift with a threshold, in percentage points: metrics are written
/// in decimal (0.891 vs 0.9 is exactly −1 %) but computed in binary floating point, where
/// that shift comes out as 1.0000000000000009 %. A shift must exceed the threshold by more.
const SHIFT_EPSILON_PCT: f64 = 1e-9;

/// Collects every tier signal, highest tier first.
pub fn assess(
    policy: &Policy,
    facts: &ChangeFacts,
    classified: &Classification,
) -> Vec<TierReason> {
    let mut reasons = Vec::new();
    for (tier, rule) in policy.risk.iter().rev() {
        let tier = *tier;
        for file in &classified.files {
            for kind in file.kinds.iter().filter(|k| rule.kinds.contains(k)) {
                reasons.push(TierReason {
                    tier,
                    signal: Signal::Kind {
                        path: file.path.clone(),
                        kind: *kind,
                        floor: false,
                    },
                });
            }
            if file.sensitive_in.contains(&tier) {
                reasons.push(TierReason {
                    tier,
                    signal: Signal::SensitivePath {
                        path: file.path.clone(),
                    },
                });
            }
        }
        for hit in classified
            .key_hits
            .iter()
            .filter(|h| rule.kinds.contains(&h.kind))
        {
            reasons.push(TierReason {
                tier,
                signal: Signal::Key {
                    path: hit.path.clone(),
                    key: hit.key.clone(),
                    kind: hit.kind,
                    detail: hit.detail.clone(),
                },
            });
        }
        for label in facts.labels.iter().filter(|l| rule.labels.contains(l)) {
            reasons.push(TierReason {
                tier,
                signal: Signal::Label {
                    label: label.clone(),
                },
            });
        }
    }
    reasons.extend(floors(classified, &reasons));
    reasons.extend(metric_shifts(policy, classified));
    if reasons.is_empty() && !classified.files.is_empty() {
        reasons.push(TierReason {
            tier: RiskTier::Low,
            signal: Signal::Governed {
                files: classified.files.len(),
            },
        });
    }
    // Stable: highest tier first, then in the order found.
    reasons.sort_by_key(|r| std::cmp::Reverse(r.tier));
    reasons
}

/// The playbook's floors, for kinds the policy left lower (or did not rank).
fn floors(classified: &Classification, found: &[TierReason]) -> Vec<TierReason> {
    let ranked = |path: &str, kind, floor: RiskTier| {
        found.iter().any(|r| {
            r.tier >= floor
                && match &r.signal {
                    Signal::Kind {
                        path: p, kind: k, ..
                    }
                    | Signal::Key {
                        path: p, kind: k, ..
                    } => p == path && *k == kind,
                    _ => false,
                }
        })
    };
    let file_kinds = classified
        .files
        .iter()
        .flat_map(|f| f.kinds.iter().map(move |k| (f.path.as_str(), *k, None)));
    let key_kinds = classified
        .key_hits
        .iter()
        .map(|h| (h.path.as_str(), h.kind, Some(h)));
    let mut out = Vec::new();
    for (path, kind, hit) in file_kinds.chain(key_kinds) {
        let Some(floor) = kind.floor() else { continue };
        if ranked(path, kind, floor) {
            continue;
        }
        let signal = match hit {
            None => Signal::Kind {
                path: path.to_owned(),
                kind,
                floor: true,
            },
            Some(hit) => Signal::Key {
                path: hit.path.clone(),
                key: hit.key.clone(),
                kind,
                detail: format!("{} (playbook floor: {floor})", hit.detail),
            },
        };
        if !out.iter().any(|r: &TierReason| r.signal == signal) {
            out.push(TierReason {
                tier: floor,
                signal,
            });
        }
    }
    out
}

/// Metric shifts over a tier's threshold (the highest tier a metric exceeds).
fn metric_shifts(policy: &Policy, classified: &Classification) -> Vec<TierReason> {
    let configured: Vec<(RiskTier, &ShiftThreshold)> = policy
        .risk
        .iter()
        .rev()
        .filter(|(_, r)| !r.metric_shift_pct.is_empty())
        .map(|(t, r)| (*t, &r.metric_shift_pct))
        .collect();
    let defaults: Vec<(RiskTier, ShiftThreshold)> = DEFAULT_SHIFTS
        .iter()
        .map(|(t, pct)| {
            (
                *t,
                ShiftThreshold {
                    any: Some(*pct),
                    ..Default::default()
                },
            )
        })
        .collect();
    let thresholds: Vec<(RiskTier, &ShiftThreshold)> = if configured.is_empty() {
        defaults.iter().map(|(t, s)| (*t, s)).collect()
    } else {
        configured
    };
    let mut out = Vec::new();
    for change in &classified.metrics {
        let (Some(base), Some(head), Some(shift)) = (change.base, change.head, change.shift_pct)
        else {
            continue;
        };
        let name = change.metric.rsplit(':').next().unwrap_or(&change.metric);
        let exceeded = thresholds.iter().find_map(|(tier, threshold)| {
            threshold
                .for_metric(name)
                .filter(|limit| shift - *limit > SHIFT_EPSILON_PCT)
                .map(|limit| (*tier, limit))
        });
        if let Some((tier, threshold_pct)) = exceeded {
            out.push(TierReason {
                tier,
                signal: Signal::MetricShift {
                    metric: change.metric.clone(),
                    base,
                    head,
                    shift_pct: shift,
                    threshold_pct,
                },
            });
        }
    }
    out
}
