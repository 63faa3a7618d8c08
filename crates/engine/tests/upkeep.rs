//! Index upkeep while writes go on: a build, a compaction and a checkpoint each run on
//! a background thread and are held at an [`UpkeepStep`] by a hook while the test
//! writes. The writes must finish while upkeep is held, which proves that upkeep holds
//! no lock of the collection there. Afterwards the index must agree exactly with the
//! records, a restart from the checkpoint must return the same query results as
//! before, and a collection deleted meanwhile must stay deleted.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

mod support;

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use api::requests::{CreateCollection, DeleteRecords, RecordBatch, WriteKind};
use api::Limits;
use ravelin_engine::{Engine, Pass, UpkeepReport, UpkeepStep};
use serde_json::{json, Value};
use store::Store;
use support::{add, answers, fixture, key, query, reopen, unindexed, vectors, Fixture, D, T};
use uuid::Uuid;

/// How long the test waits for upkeep to reach a step, or for a write to finish while
/// upkeep is held. It keeps a broken build from hanging the test run; no check
/// depends on how fast anything is.
const DEADLOCK_GUARD: Duration = Duration::from_secs(300);

/// A hook that stops index upkeep at the first step that its predicate accepts, until
/// the test calls [`Pause::release`] or drops the pause.
struct Pause {
    reached: mpsc::Receiver<UpkeepStep>,
    release: mpsc::Sender<()>,
}

fn pause_at(engine: &Engine, at: fn(&UpkeepStep) -> bool) -> Pause {
    let (reached_sender, reached) = mpsc::channel();
    let (release, release_receiver) = mpsc::channel::<()>();
    let reached_sender = Mutex::new(Some(reached_sender));
    let release_receiver = Mutex::new(release_receiver);
    engine.set_upkeep_hook(Some(Arc::new(move |step| {
        if !at(&step) {
            return;
        }
        let Some(sender) = reached_sender.lock().unwrap().take() else {
            return;
        };
        sender.send(step).unwrap();
        // An error means the test dropped the pause, which releases upkeep too.
        let _ = release_receiver.lock().unwrap().recv();
    })));
    Pause { reached, release }
}

impl Pause {
    /// Waits until upkeep is held at the step, and returns the step.
    fn wait(&self) -> UpkeepStep {
        self.reached
            .recv_timeout(DEADLOCK_GUARD)
            .expect("index upkeep reaches the step")
    }

    fn release(&self) {
        self.release.send(()).unwrap();
    }
}

fn is_rebuild_copied(step: &UpkeepStep) -> bool {
    matches!(step, UpkeepStep::RebuildCopied { .. })
}

fn is_rebuild_installed(step: &UpkeepStep) -> bool {
    matches!(step, UpkeepStep::RebuildInstalled { .. })
}

fn is_checkpoint_taken(step: &UpkeepStep) -> bool {
    matches!(step, UpkeepStep::CheckpointTaken { .. })
}

fn is_checkpoint_chunk_stored(step: &UpkeepStep) -> bool {
    matches!(step, UpkeepStep::CheckpointChunkStored { .. })
}

fn start_upkeep(engine: &Arc<Engine>, pass: Pass) -> JoinHandle<UpkeepReport> {
    let engine = Arc::clone(engine);
    std::thread::spawn(move || engine.maintain(pass))
}

/// Runs `work` on another thread and returns its result. While upkeep is held at a
/// step, a write that waited for upkeep would never finish, so the guard turns that
/// into a failure instead of a hung test.
fn without_waiting<R: Send + 'static>(
    engine: &Arc<Engine>,
    work: impl FnOnce(&Engine) -> R + Send + 'static,
) -> R {
    let (sender, receiver) = mpsc::channel();
    let engine = Arc::clone(engine);
    std::thread::spawn(move || {
        let _ = sender.send(work(&engine));
    });
    receiver
        .recv_timeout(DEADLOCK_GUARD)
        .expect("the work finishes while index upkeep is held")
}

/// The records the collection must contain: record number to embedding.
type Model = BTreeMap<usize, Vec<f32>>;

fn model_of(data: &[Vec<f32>]) -> Model {
    data.iter().cloned().enumerate().collect()
}

fn add_records(engine: &Engine, id: Uuid, model: &mut Model, first: usize, data: Vec<Vec<f32>>) {
    add(engine, id, &data, first);
    for (offset, vector) in data.into_iter().enumerate() {
        model.insert(first + offset, vector);
    }
}

/// Gives each of `records` a new embedding from `seed`.
fn update_embeddings(engine: &Engine, id: Uuid, model: &mut Model, records: &[usize], seed: u64) {
    let embeddings = vectors(records.len(), seed);
    let ids: Vec<String> = records.iter().map(|i| format!("r{i}")).collect();
    let body = json!({"ids": ids, "embeddings": embeddings});
    let batch = RecordBatch::decode(&body, WriteKind::Update, &Limits::default()).unwrap();
    assert_eq!(
        engine.write(T, D, id, WriteKind::Update, batch).unwrap(),
        records.len()
    );
    for (record, embedding) in records.iter().zip(embeddings) {
        model.insert(*record, embedding);
    }
}

/// Changes only the metadata of each of `records`, which leaves their slots alone.
fn update_metadata(engine: &Engine, id: Uuid, records: &[usize]) {
    let ids: Vec<String> = records.iter().map(|i| format!("r{i}")).collect();
    let metadatas: Vec<Value> = records.iter().map(|_| json!({"touched": true})).collect();
    let body = json!({"ids": ids, "metadatas": metadatas});
    let batch = RecordBatch::decode(&body, WriteKind::Update, &Limits::default()).unwrap();
    engine.write(T, D, id, WriteKind::Update, batch).unwrap();
}

fn delete_records(engine: &Engine, id: Uuid, model: &mut Model, records: &[usize]) {
    let ids: Vec<String> = records.iter().map(|i| format!("r{i}")).collect();
    let request = DeleteRecords::decode(&json!({"ids": ids}), &Limits::default()).unwrap();
    assert_eq!(
        engine.delete_records(T, D, id, request).unwrap(),
        records.len()
    );
    for record in records {
        model.remove(record);
    }
}

/// Checks that the index agrees exactly with `model`, that every fourth record and
/// every record in `changed` is found by its own embedding, and that no query returns
/// a record outside the model.
fn assert_agrees(engine: &Engine, id: Uuid, model: &Model, changed: &[usize]) {
    assert_eq!(engine.verify_index(T, D, id), Ok(()));
    assert_eq!(engine.count(T, D, id).unwrap(), model.len());
    let info = engine.index_info(T, D, id).unwrap().expect("an index");
    assert_eq!(info.live, model.len());

    let sampled = model.keys().copied().filter(|i| i % 4 == 0);
    let probed: Vec<usize> = sampled
        .chain(changed.iter().copied().filter(|i| model.contains_key(i)))
        .collect();
    for record in probed {
        let (found, distances) = query(engine, id, &model[&record], 10, Value::Null);
        let expected_id = format!("r{record}");
        let position = found.iter().position(|found| *found == expected_id);
        assert!(
            position.is_some(),
            "{expected_id} not found by its embedding"
        );
        assert_eq!(
            distances[position.unwrap()],
            0.0,
            "distance of {expected_id}"
        );
        assert_only_live(model, &found);
    }
}

fn assert_only_live(model: &Model, found: &[String]) {
    for found_id in found {
        let record: usize = found_id[1..].parse().unwrap();
        assert!(model.contains_key(&record), "{found_id} is not live");
    }
}

/// Splits a fixture so that its engine can be shared with the upkeep thread.
fn shared(fixture: Fixture) -> (tempfile::TempDir, std::path::PathBuf, Arc<Engine>, Uuid) {
    let Fixture {
        _dir,
        path,
        engine,
        id,
    } = fixture;
    (_dir, path, Arc::new(engine), id)
}

/// Deletes the collection while a final pass of upkeep is held at the first step that
/// `at` accepts, and checks that the pass then built and stored nothing.
fn delete_while_held(engine: &Arc<Engine>, at: fn(&UpkeepStep) -> bool) {
    let pause = pause_at(engine, at);
    let upkeep = start_upkeep(engine, Pass::Final);
    pause.wait();
    without_waiting(engine, |engine| {
        engine.delete_collection_by_name(T, D, "vectors").unwrap();
    });
    pause.release();
    let report = upkeep.join().unwrap();
    assert_eq!(report, UpkeepReport::default());
}

#[test]
fn writes_finish_while_build_is_held() {
    let (fixture, data) = unindexed(3000);
    let (_dir, _path, engine, id) = shared(fixture);
    let mut model = model_of(&data);

    let pause = pause_at(&engine, is_rebuild_copied);
    let upkeep = start_upkeep(&engine, Pass::Regular);
    pause.wait();

    // Records 10 to 59 and 100 to 149 were copied in the first step; 2,000 and up
    // were not copied yet.
    let updated: Vec<usize> = (10..60).chain(2500..2550).collect();
    let deleted: Vec<usize> = (100..150).chain(2000..2050).collect();
    model = without_waiting(&engine, move |engine| {
        add_records(engine, id, &mut model, 3000, vectors(300, 11));
        update_embeddings(engine, id, &mut model, &updated, 12);
        delete_records(engine, id, &mut model, &deleted);
        update_metadata(engine, id, &[5, 2700]);
        model
    });
    let added = model[&3100].clone();
    let (found, _) = without_waiting(&engine, move |engine| {
        query(engine, id, &added, 1, Value::Null)
    });
    assert_eq!(
        found,
        ["r3100"],
        "the exact scan sees a record added meanwhile"
    );
    assert_eq!(engine.index_info(T, D, id).unwrap(), None, "no index yet");

    pause.release();
    let report = upkeep.join().unwrap();
    assert_eq!(report.built, 1);

    let changed: Vec<usize> = (10..60).chain(2500..2550).chain(3000..3300).collect();
    assert_agrees(&engine, id, &model, &changed);
}

#[test]
fn compaction_replays_writes_made_meanwhile() {
    let (fixture, data) = fixture(3000);
    let (_dir, _path, engine, id) = shared(fixture);
    let mut model = model_of(&data);
    let deleted: Vec<usize> = (0..1000).map(|i| i * 3).collect();
    delete_records(&engine, id, &mut model, &deleted);

    let copying = pause_at(&engine, is_rebuild_copied);
    let upkeep = start_upkeep(&engine, Pass::Regular);
    copying.wait();

    let updated: Vec<usize> = model.keys().copied().filter(|i| i % 3 != 0).collect();
    let updates = updated.clone();
    model = without_waiting(&engine, move |engine| {
        update_embeddings(engine, id, &mut model, &updates, 21);
        add_records(engine, id, &mut model, 3000, vectors(300, 22));
        delete_records(engine, id, &mut model, &[1, 2, 3000, 3001]);
        model
    });
    let old_vector = data[5].clone();
    let new_vector = model[&5].clone();
    let (old_found, new_found) = without_waiting(&engine, move |engine| {
        (
            query(engine, id, &old_vector, 10, Value::Null).0,
            query(engine, id, &new_vector, 1, Value::Null).0,
        )
    });
    assert!(!old_found.contains(&"r5".to_string()), "r5 moved away");
    assert_eq!(new_found, ["r5"], "the old index has r5 at its new place");
    assert_only_live(&model, &old_found);

    // Writes from here on change both indexes.
    let replaying = pause_at(&engine, is_rebuild_installed);
    copying.release();
    let step = replaying.wait();
    let UpkeepStep::RebuildInstalled { pending, .. } = step else {
        panic!("held at {step:?}");
    };
    // The deleted records were updated or added before, so they add no positions.
    assert_eq!(pending, updated.len() + 300, "positions journaled");
    model = without_waiting(&engine, move |engine| {
        add_records(engine, id, &mut model, 3300, vectors(50, 23));
        update_embeddings(engine, id, &mut model, &[7, 8, 3100], 24);
        delete_records(engine, id, &mut model, &[10, 11, 3300]);
        model
    });

    replaying.release();
    let report = upkeep.join().unwrap();
    assert_eq!(report.compacted, 1);

    let changed: Vec<usize> = [5, 7, 8, 3100]
        .into_iter()
        .chain(3000..3350)
        .chain(updated.iter().copied().step_by(7))
        .collect();
    assert_agrees(&engine, id, &model, &changed);
}

#[test]
fn checkpoint_covers_writes_up_to_its_copy() {
    let (fixture, data) = fixture(2000);
    let (_dir, path, engine, id) = shared(fixture);
    let mut model = model_of(&data);
    // Four batches of 500 are sequence numbers 1 to 4; these are 5 and 6.
    delete_records(&engine, id, &mut model, &(0..100).collect::<Vec<_>>());
    update_embeddings(&engine, id, &mut model, &[100], 31);

    let pause = pause_at(&engine, is_checkpoint_taken);
    let upkeep = start_upkeep(&engine, Pass::Final);
    pause.wait();
    let updated: Vec<usize> = (200..250).collect();
    let deleted: Vec<usize> = (300..350).collect();
    model = without_waiting(&engine, move |engine| {
        add_records(engine, id, &mut model, 2000, vectors(300, 32));
        update_embeddings(engine, id, &mut model, &updated, 33);
        delete_records(engine, id, &mut model, &deleted);
        model
    });
    pause.release();
    let report = upkeep.join().unwrap();
    assert_eq!(report.checkpointed, 1);

    let changed: Vec<usize> = (100..101).chain(200..250).chain(2000..2300).collect();
    assert_agrees(&engine, id, &model, &changed);
    let before = answers(&engine, id);
    // Dropped without a final pass, as after a crash.
    drop(engine);

    let store = Store::open(&path, &key()).unwrap();
    let checkpoint = store.read_checkpoint(&id.to_string()).unwrap().unwrap();
    assert_eq!(
        checkpoint.seq, 6,
        "the checkpoint lacks the writes after its copy"
    );
    assert!(store.last_seq().unwrap() > 6);
    drop(store);

    let engine = reopen(&path);
    assert_agrees(&engine, id, &model, &changed);
    assert_eq!(answers(&engine, id), before);
}

#[test]
fn collection_deleted_during_build_stays_deleted() {
    let (fixture, _) = unindexed(2500);
    let (_dir, path, engine, id) = shared(fixture);

    delete_while_held(&engine, is_rebuild_copied);

    assert!(
        engine.index_info(T, D, id).is_err(),
        "the collection is gone"
    );
    let request =
        CreateCollection::decode(&json!({"name": "vectors"}), &Limits::default()).unwrap();
    let new_id = Uuid::try_parse(&engine.create_collection(T, D, request).unwrap().id).unwrap();
    assert_eq!(engine.count(T, D, new_id).unwrap(), 0);
    assert_eq!(engine.index_info(T, D, new_id).unwrap(), None);
    drop(engine);

    let store = Store::open(&path, &key()).unwrap();
    assert!(store.read_checkpoint(&id.to_string()).unwrap().is_none());
}

#[test]
fn collection_deleted_during_checkpoint_stays_deleted() {
    let (fixture, data) = fixture(1500);
    let (_dir, path, engine, id) = shared(fixture);
    let mut model = model_of(&data);
    delete_records(&engine, id, &mut model, &[1, 2, 3]);

    delete_while_held(&engine, is_checkpoint_chunk_stored);
    drop(engine);

    let store = Store::open(&path, &key()).unwrap();
    assert!(store.read_checkpoint(&id.to_string()).unwrap().is_none());
    assert!(store.load_catalog().unwrap().collections.is_empty());
}
