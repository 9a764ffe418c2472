//! The sequencer's unit tests (kept beside it in their own file): reordering, deadlines,
//! missing, late and duplicate volumes against a scripted clock.

use super::*;
use crate::ingest::volume::{Datatype, Geometry};

const TR: u64 = 100_000_000; // 100 ms

fn settings(total: Option<u32>) -> SequencerSettings {
    SequencerSettings {
        first_index: 1,
        total,
        tr_ns: Some(TR),
        deadline_tr: 1.5,
        quiet_trs: 10.0,
    }
}

fn vol(index: u32, seen_ns: u64) -> Volume {
    Volume {
        index,
        path: PathBuf::from(format!("v_{index:04}.nii")),
        geometry: Geometry {
            dims: [1, 1, 1],
            voxel_size: [1.0; 3],
            affine: [[0.0; 4]; 4],
            datatype: Datatype::F32,
            tr_s: None,
        },
        data: vec![index as f32],
        non_finite: 0,
        seen_ns,
        read_ns: seen_ns,
        slice_times_s: None,
    }
}

/// A compact picture of events: "v1", "m2", "l2", "r3", "d1", "end:quiet".
fn summary(events: &[IngestEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            IngestEvent::Volume(v) => format!("v{}", v.index),
            IngestEvent::Late(v) => format!("l{}", v.index),
            IngestEvent::Missing { index, .. } => format!("m{index}"),
            IngestEvent::Rejected { index, .. } => format!("r{}", index.unwrap_or(0)),
            IngestEvent::Duplicate { index, .. } => format!("d{index}"),
            IngestEvent::Warning { .. } => "w".into(),
            IngestEvent::RunEnded { reason, .. } => format!("end:{reason:?}"),
        })
        .collect()
}

#[test]
fn in_order_stream_passes_straight_through() {
    let mut s = Sequencer::new(settings(Some(3)));
    for i in 1..=3 {
        s.offer_volume(vol(i, i as u64 * TR), i as u64 * TR);
    }
    assert_eq!(
        summary(&s.take_events()),
        ["v1", "v2", "v3", "end:AllVolumes"]
    );
    assert_eq!(s.counts().delivered, 3);
}

#[test]
fn swapped_neighbours_come_out_in_order() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    s.offer_volume(vol(3, 2 * TR), 2 * TR);
    s.tick(2 * TR + 10);
    assert_eq!(summary(&s.take_events()), ["v1"]);
    s.offer_volume(vol(2, 2 * TR + TR / 4), 2 * TR + TR / 4);
    assert_eq!(summary(&s.take_events()), ["v2", "v3"]);
}

#[test]
fn a_drop_is_missing_exactly_at_its_deadline_then_late() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    assert_eq!(summary(&s.take_events()), ["v1"]);
    let deadline = TR + TR * 3 / 2;
    assert_eq!(s.next_wakeup_ns(), Some(deadline));
    s.tick(deadline - 1);
    assert!(s.take_events().is_empty());
    s.tick(deadline);
    let events = s.take_events();
    assert_eq!(summary(&events), ["m2"]);
    assert!(
        matches!(events[0], IngestEvent::Missing { deadline_ns, .. } if deadline_ns == deadline)
    );
    // Volume 3 arrives on time; the next deadline counts from it.
    s.offer_volume(vol(3, 3 * TR), 3 * TR);
    s.offer_volume(vol(2, 3 * TR + 5), 3 * TR + 5);
    assert_eq!(summary(&s.take_events()), ["v3", "l2"]);
    assert_eq!(s.next_wakeup_ns(), Some(3 * TR + TR * 3 / 2));
    // A second copy of 2 is now a duplicate.
    s.offer_volume(vol(2, 4 * TR), 4 * TR);
    assert_eq!(summary(&s.take_events()), ["d2"]);
    assert_eq!(s.counts().late, 1);
    assert_eq!(s.counts().missing, 1);
}

#[test]
fn consecutive_drops_are_one_tr_apart_and_the_first_volume_can_be_lost() {
    let mut s = Sequencer::new(settings(Some(5)));
    // Volume 1 never comes; 2 arrives at 2 TR: 1 is due half a TR later.
    s.offer_volume(vol(2, 2 * TR), 2 * TR);
    assert_eq!(s.next_wakeup_ns(), Some(2 * TR + TR / 2));
    s.tick(2 * TR + TR / 2);
    assert_eq!(summary(&s.take_events()), ["m1", "v2"]);
    // 3 and 4 lost: missing at 2 TR + 1.5 TR and one TR later.
    s.tick(3 * TR + TR / 2);
    assert_eq!(summary(&s.take_events()), ["m3"]);
    s.tick(4 * TR + TR / 2 - 1);
    assert!(s.take_events().is_empty());
    s.tick(4 * TR + TR / 2);
    assert_eq!(summary(&s.take_events()), ["m4"]);
    s.offer_volume(vol(5, 5 * TR), 5 * TR);
    assert_eq!(summary(&s.take_events()), ["v5", "end:AllVolumes"]);
}

#[test]
fn duplicate_while_waiting_keeps_the_first() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    s.offer_volume(vol(3, 2 * TR), 2 * TR);
    let mut again = vol(3, 2 * TR + 1);
    again.path = PathBuf::from("copy_0003.nii");
    s.offer_volume(again, 2 * TR + 1);
    let events = s.take_events();
    assert_eq!(summary(&events), ["v1", "d3"]);
    match &events[1] {
        IngestEvent::Duplicate {
            path, first_path, ..
        } => {
            assert_eq!(path, &PathBuf::from("copy_0003.nii"));
            assert_eq!(first_path, &PathBuf::from("v_0003.nii"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejected_slot_is_emitted_in_order_and_a_valid_file_later_is_late() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    s.offer_rejected(Some(2), "v_0002.nii".into(), "geometry".into(), 2 * TR);
    s.offer_volume(vol(3, 3 * TR), 3 * TR);
    assert_eq!(summary(&s.take_events()), ["v1", "r2", "v3"]);
    s.offer_volume(vol(2, 4 * TR), 4 * TR);
    assert_eq!(summary(&s.take_events()), ["l2"]);
    // A rejected file with no index is reported at once.
    s.offer_rejected(None, "junk.nii".into(), "no index".into(), 4 * TR);
    assert_eq!(summary(&s.take_events()), ["r0"]);
}

#[test]
fn a_valid_file_replaces_a_waiting_rejected_one() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    s.offer_rejected(Some(3), "v_0003.nii".into(), "incomplete".into(), 2 * TR);
    s.offer_volume(vol(3, 2 * TR + 10), 2 * TR + 10);
    s.offer_volume(vol(2, 2 * TR + 20), 2 * TR + 20);
    assert_eq!(summary(&s.take_events()), ["v1", "v2", "v3"]);
}

#[test]
fn quiet_end_flushes_what_waits_behind_a_gap() {
    let mut s = Sequencer::new(SequencerSettings {
        deadline_tr: 100.0,
        ..settings(None)
    });
    s.offer_volume(vol(1, TR), TR);
    s.offer_volume(vol(3, 2 * TR), 2 * TR);
    s.tick(2 * TR + 10 * TR);
    assert_eq!(summary(&s.take_events()), ["v1", "m2", "v3", "end:Quiet"]);
    assert!(s.is_ended());
    assert_eq!(s.next_wakeup_ns(), None);
}

#[test]
fn unknown_tr_means_no_deadline_until_it_is_set() {
    let mut s = Sequencer::new(SequencerSettings {
        tr_ns: None,
        ..settings(None)
    });
    s.offer_volume(vol(1, TR), TR);
    s.tick(100 * TR);
    assert_eq!(summary(&s.take_events()), ["v1"]);
    s.set_tr_ns(TR);
    s.offer_volume(vol(2, 101 * TR), 101 * TR);
    assert_eq!(s.next_wakeup_ns(), Some(101 * TR + TR * 3 / 2));
}

#[test]
fn a_swap_does_not_make_the_following_volume_look_late() {
    let mut s = Sequencer::new(settings(None));
    // Slots at i x TR: 4 is written in 3's slot, 3 a quarter TR later.
    s.offer_volume(vol(1, TR), TR);
    s.offer_volume(vol(2, 2 * TR), 2 * TR);
    s.offer_volume(vol(4, 3 * TR), 3 * TR);
    s.offer_volume(vol(3, 3 * TR + TR / 4), 3 * TR + TR / 4);
    // 5 is due 1.5 TR after 3's arrival projected one index on: 3.25 + 2.5 TR.
    assert_eq!(s.next_wakeup_ns(), Some(3 * TR + TR / 4 + 5 * TR / 2));
    s.tick(5 * TR);
    s.offer_volume(vol(5, 5 * TR), 5 * TR);
    assert_eq!(summary(&s.take_events()), ["v1", "v2", "v3", "v4", "v5"]);
}

#[test]
fn late_volumes_move_no_deadline_and_cause_no_cascade() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    s.tick(2 * TR + TR / 2);
    // 2 is half a TR too late: missing, then late; 3 on time is still in order.
    s.offer_volume(vol(2, 2 * TR + 6 * TR / 10), 2 * TR + 6 * TR / 10);
    s.offer_volume(vol(3, 3 * TR), 3 * TR);
    assert_eq!(summary(&s.take_events()), ["v1", "m2", "l2", "v3"]);
    assert_eq!(s.next_wakeup_ns(), Some(3 * TR + 3 * TR / 2));
    // A file completed long after its slot does not stretch the schedule either.
    s.offer_volume(vol(4, 4 * TR), 4 * TR);
    s.offer_volume(vol(2, 9 * TR), 9 * TR);
    assert_eq!(s.next_wakeup_ns(), Some(4 * TR + 3 * TR / 2));
}

#[test]
fn leading_gaps_are_declared_together_when_the_stream_starts_late() {
    // The daemon expects index 1 but the scanner's files start at 100.
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(100, TR), TR);
    s.offer_volume(vol(101, 2 * TR), 2 * TR);
    s.tick(TR + TR / 2);
    let events = s.take_events();
    assert_eq!(events.len(), 99 + 2);
    assert_eq!(summary(&events[97..]), ["m98", "m99", "v100", "v101"]);
}

#[test]
fn a_rejected_slot_does_not_push_later_deadlines_back() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    // 2's file was rejected only after a second of retries.
    s.offer_rejected(Some(2), "v_0002.nii".into(), "incomplete".into(), 12 * TR);
    assert_eq!(summary(&s.take_events()), ["v1", "r2"]);
    // 3 is still due 1.5 TR after its slot as projected from volume 1.
    assert_eq!(s.next_wakeup_ns(), Some(TR + 2 * TR + TR / 2));
}

#[test]
fn stopping_never_emits_after_run_ended_and_trailing_missing_is_not_counted() {
    let mut s = Sequencer::new(settings(Some(3)));
    s.offer_volume(vol(1, TR), TR);
    s.offer_volume(vol(3, 2 * TR), 2 * TR);
    s.offer_volume(vol(5, 2 * TR), 2 * TR);
    s.finish(EndReason::Stopped, 2 * TR + 1);
    let events = s.take_events();
    assert_eq!(summary(&events), ["v1", "m2", "v3", "end:AllVolumes"]);
    // Unknown length: two Missing records after the last volume are not lost volumes.
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    s.tick(TR + 5 * TR / 2);
    s.tick(20 * TR);
    let events = s.take_events();
    match events.last() {
        Some(IngestEvent::RunEnded {
            counts, last_index, ..
        }) => {
            assert_eq!(*last_index, Some(1));
            assert_eq!(counts.missing, 0, "{:?}", summary(&events));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_outage_held_for_declares_nothing_missing_or_quiet_in_its_time() {
    let mut s = Sequencer::new(settings(None));
    s.offer_volume(vol(1, TR), TR);
    // The folder is out of reach for 30 TRs (past the deadline and the 10-TR quiet end).
    let outage = 30 * TR;
    s.hold_for(outage);
    s.tick(TR + outage);
    assert_eq!(summary(&s.take_events()), ["v1"]);
    // Volume 2 arrives as soon as the folder is back, in time.
    s.offer_volume(vol(2, 2 * TR + outage), 2 * TR + outage);
    assert_eq!(summary(&s.take_events()), ["v2"]);
    // Without the hold the same clock would have declared it missing and ended the run.
    let mut t = Sequencer::new(settings(None));
    t.offer_volume(vol(1, TR), TR);
    t.tick(TR + outage);
    assert_eq!(summary(&t.take_events())[..2], ["v1", "m2"]);
}
