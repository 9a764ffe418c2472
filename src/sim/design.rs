//! The experiment: NSD-like rapid event-related runs. Each image is shown for `stimulus_s`
//! seconds, then a gap; training runs show unique images, test runs show a smaller set of
//! images, each `test_repeats` times (as NSD's shared images), in shuffled order. Runs start
//! with dummy scans and end with enough time for the last response to come back down.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Train,
    Test,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Train => "train",
            RunKind::Test => "test",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Seconds from the first volume of the run file (dummy scans included).
    pub onset_s: f64,
    pub duration_s: f64,
    /// Index into the session's stimulus list.
    pub stimulus: usize,
}

#[derive(Debug, Clone)]
pub struct RunDesign {
    /// 1-based run number.
    pub run: usize,
    pub kind: RunKind,
    pub n_volumes: usize,
    pub trials: Vec<Trial>,
}

#[derive(Debug, Clone)]
pub struct DesignParams {
    pub tr_s: f64,
    pub volumes_per_run: usize,
    pub dummy_scans: usize,
    pub stimulus_s: f64,
    pub gap_s: f64,
    pub train_runs: usize,
    pub test_runs: usize,
    pub test_repeats: usize,
}

/// Seconds after the last offset left for the haemodynamic response to return to baseline.
pub const TAIL_S: f64 = 12.0;

impl DesignParams {
    pub fn trials_per_run(&self) -> usize {
        let usable =
            (self.volumes_per_run.saturating_sub(self.dummy_scans)) as f64 * self.tr_s - TAIL_S;
        (usable / (self.stimulus_s + self.gap_s)).floor().max(0.0) as usize
    }

    pub fn n_train_images(&self) -> usize {
        self.train_runs * self.trials_per_run()
    }

    pub fn n_test_images(&self) -> usize {
        (self.test_runs * self.trials_per_run()).div_ceil(self.test_repeats.max(1))
    }
}

/// The runs, training first. Stimulus indices: training images are `0..n_train`, test images
/// `n_train..n_train + n_test`.
pub fn make_design(p: &DesignParams, seed: u64) -> Vec<RunDesign> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xde51_9000);
    let per_run = p.trials_per_run();
    let n_train = p.n_train_images();
    let n_test = p.n_test_images();
    let mut train_order: Vec<usize> = (0..n_train).collect();
    train_order.shuffle(&mut rng);
    let mut test_order: Vec<usize> = (0..n_test)
        .flat_map(|i| std::iter::repeat_n(n_train + i, p.test_repeats.max(1)))
        .collect();
    test_order.shuffle(&mut rng);
    test_order.truncate(p.test_runs * per_run);
    let runs = train_order
        .chunks(per_run.max(1))
        .map(|c| (RunKind::Train, c.to_vec()))
        .chain(
            test_order
                .chunks(per_run.max(1))
                .map(|c| (RunKind::Test, c.to_vec())),
        );
    runs.enumerate()
        .map(|(i, (kind, stimuli))| RunDesign {
            run: i + 1,
            kind,
            n_volumes: p.volumes_per_run,
            trials: stimuli
                .into_iter()
                .enumerate()
                .map(|(t, stimulus)| Trial {
                    onset_s: p.dummy_scans as f64 * p.tr_s + t as f64 * (p.stimulus_s + p.gap_s),
                    duration_s: p.stimulus_s,
                    stimulus,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsd_like_design() {
        let p = DesignParams {
            tr_s: 1.5,
            volumes_per_run: 200,
            dummy_scans: 4,
            stimulus_s: 3.0,
            gap_s: 1.0,
            train_runs: 2,
            test_runs: 2,
            test_repeats: 3,
        };
        assert_eq!(p.trials_per_run(), 70); // (196 x 1.5 - 12) / 4
        let runs = make_design(&p, 1);
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[0].trials[0].onset_s, 6.0);
        assert_eq!(runs[0].trials[1].onset_s, 10.0);
        let last = runs[0].trials.last().unwrap();
        assert!(last.onset_s + last.duration_s + TAIL_S <= 200.0 * 1.5);
        // Training images are unique; each test image is shown 3 times (the last maybe fewer).
        let mut train: Vec<usize> = runs[..2]
            .iter()
            .flat_map(|r| r.trials.iter().map(|t| t.stimulus))
            .collect();
        train.sort();
        assert_eq!(train, (0..140).collect::<Vec<_>>());
        let test: Vec<usize> = runs[2..]
            .iter()
            .flat_map(|r| r.trials.iter().map(|t| t.stimulus))
            .collect();
        assert_eq!(test.len(), 140);
        assert!(test.iter().all(|&s| (140..140 + 47).contains(&s)));
        assert_eq!(test.iter().filter(|&&s| s == 140).count(), 3);
    }
}
