//! The soak report as text: the run, its counts and checks, the RSS table, latency per 1 000
//! volumes, and the budgets with their verdicts.

use std::fmt;

use super::{optional_ms, SoakReport, BLOCK, GLOBAL_TOLERANCE, MOTION_TOLERANCE, RSS_EVERY};

fn list(f: &mut fmt::Formatter<'_>, title: &str, items: &[String], total: usize) -> fmt::Result {
    if total == 0 {
        return Ok(());
    }
    writeln!(f, "{title} ({total}):")?;
    for item in items {
        writeln!(f, "  {item}")?;
    }
    if total > items.len() {
        writeln!(f, "  ... and {} more", total - items.len())?;
    }
    Ok(())
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.schedule;
        let o = &self.options;
        writeln!(
            f,
            "soak: {} volumes at TR {} ms: the demo run's {} volumes at {:.1}x the scanner, \
             cycled ({} dummy scans once, then {} per cycle; {} cycles of its trials); \
             ingest.deadline_tr {}; gallery {}; volume files {}",
            s.volumes,
            s.tr_ms,
            s.run_length,
            s.speed(),
            s.dummies,
            s.cycle_length(),
            s.cycles(),
            o.deadline_tr,
            if o.gallery { "on" } else { "off" },
            if o.keep_files {
                "kept"
            } else {
                "removed once preprocessed"
            }
        )?;
        writeln!(
            f,
            "time: set-up {:.1} s, run {:.1} s",
            self.setup_s, self.run_s
        )?;
        writeln!(
            f,
            "written: {} volume files, at most {:.1} ms behind schedule ({} more than half a TR \
             behind)",
            self.written, self.writer_max_late_ms, self.late_writes
        )?;
        let gaps: Vec<String> = self.gaps.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(
            f,
            "delivered: {} preprocessed + {} dummy scans; {} missed, {} delivered twice, {} \
             outside the run; gap records: {}; warnings {}; errors {}",
            self.preprocessed,
            self.dummies,
            self.missed.len(),
            self.duplicated,
            self.outside,
            if gaps.is_empty() {
                "none".to_string()
            } else {
                gaps.join(", ")
            },
            self.warnings_total,
            self.errors_total
        )?;
        let c = &self.counts;
        writeln!(
            f,
            "ingest counts: {} delivered, {} missing, {} late, {} rejected, {} duplicates, {} \
             with non-finite voxels",
            c.delivered, c.missing, c.late, c.rejected, c.duplicates, c.non_finite_volumes
        )?;
        let (first, later) = (&self.deviation_first_cycle, &self.deviation_later_cycles);
        writeln!(
            f,
            "content: {} volumes checked against their source volume's offline figures, {} \
             misread; largest deviation in the first cycle: global signal {:.1e} (relative), \
             motion {:.1e}; in later cycles: {:.1e}, {:.1e}; tolerance {GLOBAL_TOLERANCE:.0e} \
             and {MOTION_TOLERANCE} mm or degrees, which tells {} of {} source volumes apart",
            self.checked,
            self.misread,
            first.global,
            first.motion,
            later.global,
            later.motion,
            self.distinguishable,
            self.source_volumes
        )?;
        writeln!(
            f,
            "trials: {} samples, {} decoded ({} not), {} drawn, {} skipped while the generator \
             was busy",
            self.samples, self.decoded, self.undecoded, self.generated, self.skipped_by_generator
        )?;
        for (k, sub) in self.subscribers.iter().enumerate() {
            writeln!(
                f,
                "feedback subscriber {}: {} records; volume records missing {}, repeated {}; \
                 sample records missing {}; {} lag notices; {} unreadable lines; {}{}",
                k + 1,
                sub.records,
                sub.volumes_missing,
                sub.volumes_repeated,
                sub.samples_missing,
                sub.lag_notices,
                sub.unreadable_lines,
                if sub.ended {
                    "saw the run's end"
                } else {
                    "did NOT see the run's end"
                },
                sub.problem
                    .as_ref()
                    .map_or_else(String::new, |p| format!("; {p}"))
            )?;
        }
        if self.files_not_removed > 0 {
            writeln!(
                f,
                "{} processed files could not be removed",
                self.files_not_removed
            )?;
        }
        list(f, "misread", &self.misread_examples, self.misread)?;
        let gap_total = self.gaps.values().sum::<usize>();
        list(f, "gap records", &self.gap_examples, gap_total)?;
        list(f, "warnings", &self.warnings, self.warnings_total)?;
        list(f, "errors", &self.errors, self.errors_total)?;
        list(
            f,
            "sink problems",
            &self.sink_problems,
            self.sink_problems.len(),
        )?;

        writeln!(f)?;
        writeln!(f, "RSS every {RSS_EVERY} volumes (MiB)")?;
        writeln!(
            f,
            "  {:>7}  {:>9}  vs volume {}",
            "volumes", "RSS", self.warm_up
        )?;
        let reference = self
            .rss
            .iter()
            .find(|r| r.volumes == self.warm_up)
            .map(|r| r.kib as f64);
        for r in &self.rss {
            let change = match reference {
                Some(_) if r.volumes == self.warm_up => "reference".to_string(),
                Some(base) if r.volumes > self.warm_up && base > 0.0 => {
                    format!("{:+.1} %", (r.kib as f64 / base - 1.0) * 100.0)
                }
                _ => String::new(),
            };
            writeln!(
                f,
                "  {:>7}  {:>9.1}  {change}",
                r.volumes,
                r.kib as f64 / 1024.0
            )?;
        }

        writeln!(f)?;
        writeln!(f, "latency per {BLOCK} volumes (ms)")?;
        writeln!(
            f,
            "  {:<13}  {:>29}  {:>40}",
            "", "file event -> preprocessed", "last volume's file event -> decoded"
        )?;
        writeln!(
            f,
            "  {:<13}  {:>7} {:>10} {:>10}  {:>18} {:>10} {:>10}",
            "volumes", "n", "p50", "p99", "trials", "p50", "p99"
        )?;
        for b in &self.blocks {
            writeln!(
                f,
                "  {:<13}  {:>7} {:>10} {:>10}  {:>18} {:>10} {:>10}",
                format!("{}-{}", b.first + 1, b.end),
                b.volumes,
                optional_ms(b.p50_ms),
                optional_ms(b.p99_ms),
                b.trials,
                optional_ms(b.decode_p50_ms),
                optional_ms(b.decode_p99_ms)
            )?;
        }

        writeln!(f)?;
        writeln!(f, "budgets")?;
        for b in self.budgets() {
            writeln!(f, "  {}: {} ({})", b.name, b.verdict, b.detail)?;
        }
        write!(
            f,
            "overall: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}
