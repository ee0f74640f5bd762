//! State of the fake: datastores with their properties, export and import jobs, injected faults
//! and the request log, plus the filter/paging logic of the list operations.
//!
//! Kept free of I/O and async so the paging and filter edge cases can be unit tested directly.

use std::collections::{HashMap, VecDeque};

use super::{FakeDatastore, FakeImportJob, FakeJob, Fault, RecordedRequest};

/// Page size used when a request has no `MaxResults` (the real default is undocumented; a small
/// value makes clients that forget to page visibly wrong).
pub const DEFAULT_MAX_RESULTS: usize = 20;

/// Largest accepted `MaxResults` (the model's limit; smallest is 1).
pub const MAX_MAX_RESULTS: usize = 500;

/// At most this many [`RecordedRequest`]s are kept (oldest dropped) so long benchmarks do not
/// grow memory without bound. Per-datastore counters are unaffected.
pub const MAX_RECORDED_REQUESTS: usize = 10_000;

/// Token prefix; the rest is an obfuscated offset plus a checksum so garbage is detected.
const TOKEN_PREFIX: &str = "fhl1";
const TOKEN_MASK: u64 = 0x5bd1_e995_5bd1_e995;

/// Namespace of every `X-Amz-Target` the service accepts.
const TARGET_PREFIX: &str = "HealthLake.";

/// The operations the fake implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Operation {
    ListExportJobs,
    ListImportJobs,
    DescribeDatastore,
    ListDatastores,
}

impl Operation {
    const ALL: [Self; 4] = [
        Self::ListExportJobs,
        Self::ListImportJobs,
        Self::DescribeDatastore,
        Self::ListDatastores,
    ];

    /// The model's operation name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ListExportJobs => "ListFHIRExportJobs",
            Self::ListImportJobs => "ListFHIRImportJobs",
            Self::DescribeDatastore => "DescribeFHIRDatastore",
            Self::ListDatastores => "ListFHIRDatastores",
        }
    }

    /// From an `X-Amz-Target` header value: exact `HealthLake.<Operation>` only, as on AWS.
    pub(crate) fn from_header(target: &str) -> Option<Self> {
        let name = target.strip_prefix(TARGET_PREFIX)?;
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// From a name given to the test API: with or without the `HealthLake.` prefix.
    pub(crate) fn from_name(target: &str) -> Option<Self> {
        let name = target.strip_prefix(TARGET_PREFIX).unwrap_or(target);
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// Filters and position of one job listing, already validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ListQuery {
    pub(crate) page_size: usize,
    pub(crate) offset: usize,
    pub(crate) job_name: Option<String>,
    pub(crate) job_status: Option<String>,
    pub(crate) submitted_after: Option<f64>,
    pub(crate) submitted_before: Option<f64>,
}

impl ListQuery {
    fn matches<J: Job>(&self, job: &J) -> bool {
        self.job_status.as_deref().is_none_or(|s| job.status() == s)
            && self
                .job_name
                .as_deref()
                .is_none_or(|n| job.name() == Some(n))
            && self.submitted_after.is_none_or(|t| job.submit_time() > t)
            && self.submitted_before.is_none_or(|t| job.submit_time() < t)
    }
}

/// Filters and position of one `ListFHIRDatastores` call, already validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DatastoreQuery {
    pub(crate) page_size: usize,
    pub(crate) offset: usize,
    /// Exact name (the model's filter is "by name", not by prefix).
    pub(crate) name: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) created_after: Option<f64>,
    pub(crate) created_before: Option<f64>,
}

impl DatastoreQuery {
    fn matches(&self, ds: &FakeDatastore) -> bool {
        self.name.as_deref().is_none_or(|n| ds.name == n)
            && self.status.as_deref().is_none_or(|s| ds.status == s)
            && self.created_after.is_none_or(|t| ds.created_at > t)
            && self.created_before.is_none_or(|t| ds.created_at < t)
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Offset of the next page, `None` on the last page.
    pub(crate) next_offset: Option<usize>,
}

/// Skips to `offset` and takes one page. An offset past the end yields an empty last page
/// (items may have been removed between pages).
fn page_of<T: Clone>(items: impl Iterator<Item = T>, offset: usize, page_size: usize) -> Page<T> {
    let page_size = page_size.max(1);
    let mut items: Vec<T> = items
        .skip(offset)
        .take(page_size.saturating_add(1))
        .collect();
    let next_offset = if items.len() > page_size {
        items.truncate(page_size);
        Some(offset.saturating_add(page_size))
    } else {
        None
    };
    Page { items, next_offset }
}

/// What the job listings need to know about a job, so export and import jobs share one code path.
pub(crate) trait Job: Clone {
    fn id(&self) -> &str;
    fn name(&self) -> Option<&str>;
    fn status(&self) -> &str;
    fn submit_time(&self) -> f64;
    fn end_time(&self) -> Option<f64>;
    fn set_status(&mut self, status: &str, end_time: Option<f64>);
    /// Drops the job's `Message` (a job that has not ended has none).
    fn clear_message(&mut self);
    /// This kind's jobs of a datastore.
    fn of(datastore: &Datastore) -> &Jobs<Self>;
    fn of_mut(datastore: &mut Datastore) -> &mut Jobs<Self>;
}

macro_rules! impl_job {
    ($t:ty, $field:ident) => {
        impl Job for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }
            fn status(&self) -> &str {
                &self.status
            }
            fn submit_time(&self) -> f64 {
                self.submit_time
            }
            fn end_time(&self) -> Option<f64> {
                self.end_time
            }
            fn set_status(&mut self, status: &str, end_time: Option<f64>) {
                status.clone_into(&mut self.status);
                self.end_time = end_time;
            }
            fn clear_message(&mut self) {
                self.message = None;
            }
            fn of(datastore: &Datastore) -> &Jobs<Self> {
                &datastore.$field
            }
            fn of_mut(datastore: &mut Datastore) -> &mut Jobs<Self> {
                &mut datastore.$field
            }
        }
    };
}
impl_job!(FakeJob, exports);
impl_job!(FakeImportJob, imports);

/// Jobs of one kind, kept sorted by [`order_key`] so listings need no sort.
#[derive(Debug)]
pub(crate) struct Jobs<J> {
    sorted: Vec<J>,
}

impl<J> Default for Jobs<J> {
    fn default() -> Self {
        Self { sorted: Vec::new() }
    }
}

impl<J: Job> Jobs<J> {
    fn position(&self, job_id: &str) -> Result<usize, usize> {
        let key = order_key(job_id);
        self.sorted
            .binary_search_by(|j| order_key(j.id()).cmp(&key))
    }

    fn insert(&mut self, job: J) {
        match self.position(job.id()) {
            Ok(i) => self.sorted[i] = job,
            Err(i) => self.sorted.insert(i, job),
        }
    }

    fn remove(&mut self, job_id: &str) -> bool {
        match self.position(job_id) {
            Ok(i) => {
                self.sorted.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    fn get_mut(&mut self, job_id: &str) -> Option<&mut J> {
        let i = self.position(job_id).ok()?;
        self.sorted.get_mut(i)
    }

    fn by_submit_time(&self) -> Vec<J> {
        let mut jobs = self.sorted.clone();
        jobs.sort_by(|a, b| {
            a.submit_time()
                .total_cmp(&b.submit_time())
                .then_with(|| a.id().cmp(b.id()))
        });
        jobs
    }

    fn list(&self, query: &ListQuery) -> Page<J> {
        page_of(
            self.sorted.iter().filter(|j| query.matches(*j)).cloned(),
            query.offset,
            query.page_size,
        )
    }
}

/// One datastore: its properties and its jobs.
#[derive(Debug)]
pub(crate) struct Datastore {
    properties: FakeDatastore,
    exports: Jobs<FakeJob>,
    imports: Jobs<FakeImportJob>,
}

impl Datastore {
    fn new(properties: FakeDatastore) -> Self {
        Self {
            properties,
            exports: Jobs::default(),
            imports: Jobs::default(),
        }
    }

    /// Whether a request signed for `region` can see this datastore.
    fn visible_from(&self, region: &str) -> bool {
        self.properties
            .region
            .as_deref()
            .is_none_or(|own| own == region)
    }
}

/// Listing order: by a hash of the id, so it is stable but unrelated to submission/creation
/// order (the API promises no order and clients must not rely on one).
fn order_key(id: &str) -> (u64, &str) {
    (fnv1a(id.as_bytes()), id)
}

/// Sorts `jobs` into the order the fake keeps (and lists) them in, so that adding them one by one
/// appends instead of shifting the stored jobs (seconds instead of minutes at 10^6 jobs).
pub fn sort_in_listing_order(jobs: &mut [FakeJob]) {
    jobs.sort_by_cached_key(|job| {
        let (hash, id) = order_key(&job.id);
        (hash, id.to_owned())
    });
}

/// FNV-1a, chosen because it is deterministic across runs and Rust versions.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Encodes a page offset as an opaque `NextToken`.
pub(crate) fn encode_token(offset: usize) -> String {
    let offset = offset as u64;
    let check = fnv1a(&offset.to_le_bytes()) as u32;
    format!("{TOKEN_PREFIX}{:016x}{check:08x}", offset ^ TOKEN_MASK)
}

/// Decodes a token made by [`encode_token`]; `None` for anything else.
pub(crate) fn decode_token(token: &str) -> Option<usize> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    if rest.len() != 24 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let masked = u64::from_str_radix(rest.get(..16)?, 16).ok()?;
    let check = u32::from_str_radix(rest.get(16..)?, 16).ok()?;
    let offset = masked ^ TOKEN_MASK;
    if fnv1a(&offset.to_le_bytes()) as u32 != check {
        return None;
    }
    usize::try_from(offset).ok()
}

/// Everything the fake knows. Accessed through `FakeHealthLake`'s mutex.
#[derive(Debug, Default)]
pub(crate) struct Store {
    datastores: HashMap<String, Datastore>,
    /// Faults for every per-datastore operation, by datastore id.
    faults: HashMap<String, Fault>,
    /// Faults for one operation on one datastore; win over `faults`.
    operation_faults: HashMap<(Operation, String), Fault>,
    list_datastores_fault: Option<Fault>,
    log: VecDeque<RecordedRequest>,
    /// Calls per operation and datastore id (`""` for `ListFHIRDatastores`).
    counts: HashMap<(Operation, String), usize>,
}

impl Store {
    pub(crate) fn add_datastore(&mut self, datastore_id: &str) {
        self.datastores
            .entry(datastore_id.to_owned())
            .or_insert_with(|| Datastore::new(FakeDatastore::new(datastore_id)));
    }

    fn datastore_mut(&mut self, datastore_id: &str) -> &mut Datastore {
        self.datastores
            .entry(datastore_id.to_owned())
            .or_insert_with(|| Datastore::new(FakeDatastore::new(datastore_id)))
    }

    pub(crate) fn set_datastore(&mut self, datastore_id: &str, properties: FakeDatastore) {
        self.datastore_mut(datastore_id).properties = properties;
    }

    pub(crate) fn datastore(&self, datastore_id: &str) -> Option<FakeDatastore> {
        self.datastores
            .get(datastore_id)
            .map(|d| d.properties.clone())
    }

    pub(crate) fn update_datastore(
        &mut self,
        datastore_id: &str,
        update: impl FnOnce(&mut FakeDatastore),
    ) -> bool {
        match self.datastores.get_mut(datastore_id) {
            Some(ds) => {
                update(&mut ds.properties);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_datastore(&mut self, datastore_id: &str) {
        self.datastores.remove(datastore_id);
    }

    pub(crate) fn datastore_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.datastores.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Adds a job of its kind, creating the datastore if missing; a job with the same id is
    /// replaced.
    pub(crate) fn add<J: Job>(&mut self, datastore_id: &str, job: J) {
        J::of_mut(self.datastore_mut(datastore_id)).insert(job);
    }

    /// Removes a `J` job; returns whether it existed.
    pub(crate) fn remove<J: Job>(&mut self, datastore_id: &str, job_id: &str) -> bool {
        self.datastores
            .get_mut(datastore_id)
            .is_some_and(|ds| J::of_mut(ds).remove(job_id))
    }

    /// Changes a `J` job; returns `false` when the datastore or job does not exist.
    pub(crate) fn update<J: Job>(
        &mut self,
        datastore_id: &str,
        job_id: &str,
        change: impl FnOnce(&mut J),
    ) -> bool {
        self.datastores
            .get_mut(datastore_id)
            .and_then(|ds| J::of_mut(ds).get_mut(job_id))
            .map(change)
            .is_some()
    }

    /// The `J` jobs of a datastore by submit time, then id (empty if the datastore is unknown).
    pub(crate) fn all<J: Job>(&self, datastore_id: &str) -> Vec<J> {
        self.datastores
            .get(datastore_id)
            .map(|ds| J::of(ds).by_submit_time())
            .unwrap_or_default()
    }

    pub(crate) fn set_fault(&mut self, datastore_id: &str, fault: Option<Fault>) {
        match fault {
            Some(f) => {
                self.faults.insert(datastore_id.to_owned(), f);
            }
            None => {
                self.faults.remove(datastore_id);
            }
        }
    }

    pub(crate) fn set_fault_for(
        &mut self,
        target: &str,
        datastore_id: &str,
        fault: Option<Fault>,
    ) -> bool {
        let Some(op) = Operation::from_name(target).filter(|op| *op != Operation::ListDatastores)
        else {
            return false;
        };
        let key = (op, datastore_id.to_owned());
        match fault {
            Some(f) => {
                self.operation_faults.insert(key, f);
            }
            None => {
                self.operation_faults.remove(&key);
            }
        }
        true
    }

    pub(crate) fn set_list_datastores_fault(&mut self, fault: Option<Fault>) {
        self.list_datastores_fault = fault;
    }

    /// The fault for one call: the operation-specific one, else the datastore-wide one.
    pub(crate) fn fault(&self, op: Operation, datastore_id: &str) -> Option<Fault> {
        if op == Operation::ListDatastores {
            return self.list_datastores_fault.clone();
        }
        self.operation_faults
            .get(&(op, datastore_id.to_owned()))
            .or_else(|| self.faults.get(datastore_id))
            .cloned()
    }

    pub(crate) fn record(&mut self, request: RecordedRequest) {
        match Operation::from_header(&request.target) {
            Some(Operation::ListDatastores) => {
                *self
                    .counts
                    .entry((Operation::ListDatastores, String::new()))
                    .or_default() += 1;
            }
            Some(op) => {
                if let Some(id) = &request.datastore_id {
                    *self.counts.entry((op, id.clone())).or_default() += 1;
                }
            }
            None => {}
        }
        if self.log.len() >= MAX_RECORDED_REQUESTS {
            self.log.pop_front();
        }
        self.log.push_back(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.log.iter().cloned().collect()
    }

    pub(crate) fn request_count(&self, target: &str, datastore_id: &str) -> usize {
        Operation::from_name(target)
            .and_then(|op| self.counts.get(&(op, datastore_id.to_owned())))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn clear_requests(&mut self) {
        self.log.clear();
        self.counts.clear();
    }

    fn visible(&self, datastore_id: &str, region: &str) -> Option<&Datastore> {
        self.datastores
            .get(datastore_id)
            .filter(|ds| ds.visible_from(region))
    }

    /// `J` jobs: filters, then pages. `None` when the datastore does not exist (for `region`).
    pub(crate) fn list<J: Job>(
        &self,
        datastore_id: &str,
        region: &str,
        query: &ListQuery,
    ) -> Option<Page<J>> {
        Some(J::of(self.visible(datastore_id, region)?).list(query))
    }

    /// Properties of a datastore visible from `region`.
    pub(crate) fn describe(&self, datastore_id: &str, region: &str) -> Option<FakeDatastore> {
        Some(self.visible(datastore_id, region)?.properties.clone())
    }

    /// Datastores visible from `region`, filtered, in [`order_key`] order, then paged.
    pub(crate) fn list_datastores(
        &self,
        region: &str,
        query: &DatastoreQuery,
    ) -> Page<(String, FakeDatastore)> {
        let mut matching: Vec<(&String, &Datastore)> = self
            .datastores
            .iter()
            .filter(|(_, ds)| ds.visible_from(region) && query.matches(&ds.properties))
            .collect();
        matching.sort_by(|a, b| order_key(a.0).cmp(&order_key(b.0)));
        page_of(
            matching
                .into_iter()
                .map(|(id, ds)| (id.clone(), ds.properties.clone())),
            query.offset,
            query.page_size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeProgress, LIST_FHIR_EXPORT_JOBS_TARGET};

    fn store_with(n: usize) -> Store {
        let mut s = Store::default();
        s.add_datastore("ds");
        for i in 0..n {
            s.add(
                "ds",
                FakeJob::new(format!("job-{i:04}"), "COMPLETED", i as f64),
            );
        }
        s
    }

    fn query(page_size: usize) -> ListQuery {
        ListQuery {
            page_size,
            ..ListQuery::default()
        }
    }

    fn collect_all(s: &Store, mut q: ListQuery) -> (Vec<FakeJob>, usize) {
        let mut all = Vec::new();
        let mut pages = 0;
        loop {
            let page = s.list::<FakeJob>("ds", "r", &q).expect("datastore exists");
            pages += 1;
            all.extend(page.items);
            match page.next_offset {
                Some(o) => q.offset = decode_token(&encode_token(o)).expect("round trip"),
                None => return (all, pages),
            }
        }
    }

    #[test]
    fn unknown_datastore_is_none() {
        assert_eq!(
            Store::default().list::<FakeJob>("nope", "r", &query(10)),
            None
        );
    }

    #[test]
    fn empty_datastore_gives_one_empty_last_page() {
        let s = store_with(0);
        let page = s.list::<FakeJob>("ds", "r", &query(10)).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.next_offset, None);
    }

    #[test]
    fn exact_multiple_of_page_size_has_no_trailing_empty_page() {
        let s = store_with(20);
        let (all, pages) = collect_all(&s, query(10));
        assert_eq!(all.len(), 20);
        assert_eq!(pages, 2);
    }

    #[test]
    fn one_more_than_page_size_gives_two_pages() {
        let s = store_with(11);
        let (all, pages) = collect_all(&s, query(10));
        assert_eq!((all.len(), pages), (11, 2));
    }

    #[test]
    fn every_job_exactly_once_and_not_in_submission_order() {
        let s = store_with(100);
        let (all, _) = collect_all(&s, query(7));
        let mut ids: Vec<_> = all.iter().map(|j| j.id.clone()).collect();
        let listed = ids.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100);
        assert_ne!(listed, ids, "listing must not follow submission/id order");
    }

    #[test]
    fn offset_past_end_is_empty_last_page() {
        let s = store_with(5);
        let q = ListQuery {
            offset: 1_000,
            ..query(10)
        };
        let page = s.list::<FakeJob>("ds", "r", &q).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.next_offset, None);
    }

    #[test]
    fn huge_offset_and_page_size_do_not_overflow() {
        let s = store_with(3);
        let q = ListQuery {
            offset: usize::MAX,
            ..query(usize::MAX)
        };
        assert_eq!(s.list::<FakeJob>("ds", "r", &q).unwrap().items.len(), 0);
    }

    #[test]
    fn filters_apply_before_paging() {
        let mut s = store_with(0);
        for i in 0..30 {
            let status = if i % 3 == 0 { "FAILED" } else { "COMPLETED" };
            s.add(
                "ds",
                FakeJob::new(format!("j{i}"), status, 100.0 + i as f64),
            );
        }
        let q = ListQuery {
            job_status: Some("FAILED".into()),
            ..query(4)
        };
        let (all, pages) = collect_all(&s, q);
        assert_eq!(all.len(), 10);
        assert_eq!(pages, 3);
        assert!(all.iter().all(|j| j.status == "FAILED"));
    }

    #[test]
    fn time_filters_are_strict() {
        let s = store_with(10); // submit times 0..=9
        let q = ListQuery {
            submitted_after: Some(3.0),
            submitted_before: Some(7.0),
            ..query(100)
        };
        let mut times: Vec<f64> = s
            .list::<FakeJob>("ds", "r", &q)
            .unwrap()
            .items
            .iter()
            .map(|j| j.submit_time)
            .collect();
        times.sort_by(f64::total_cmp);
        assert_eq!(times, vec![4.0, 5.0, 6.0]);
    }

    #[test]
    fn name_filter_is_exact_and_skips_unnamed() {
        let mut s = store_with(3);
        s.add("ds", FakeJob::new("n1", "COMPLETED", 1.0).named("nightly"));
        s.add(
            "ds",
            FakeJob::new("n2", "COMPLETED", 1.0).named("nightly-2"),
        );
        let q = ListQuery {
            job_name: Some("nightly".into()),
            ..query(100)
        };
        let page = s.list::<FakeJob>("ds", "r", &q).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, "n1");
    }

    #[test]
    fn add_job_replaces_same_id_and_set_status_works() {
        let mut s = store_with(0);
        s.add("ds", FakeJob::new("a", "SUBMITTED", 1.0));
        s.add("ds", FakeJob::new("a", "QUEUED", 1.0));
        assert_eq!(s.all::<FakeJob>("ds").len(), 1);
        assert!(s.update("ds", "a", |j: &mut FakeJob| j
            .set_status("ARCHIVED", Some(5.5))));
        assert_eq!(s.all::<FakeJob>("ds")[0].status, "ARCHIVED");
        assert_eq!(s.all::<FakeJob>("ds")[0].end_time, Some(5.5));
        assert!(!s.update("ds", "missing", |j: &mut FakeJob| j.set_status("X", None)));
        assert!(!s.update("other", "a", |j: &mut FakeJob| j.set_status("X", None)));
        assert!(s.remove::<FakeJob>("ds", "a"));
        assert!(!s.remove::<FakeJob>("ds", "a"));
    }

    #[test]
    fn jobs_are_returned_in_submission_order() {
        let s = store_with(50);
        let times: Vec<f64> = s
            .all::<FakeJob>("ds")
            .iter()
            .map(|j| j.submit_time)
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        for o in [0, 1, 20, 500, 123_456, usize::MAX] {
            assert_eq!(decode_token(&encode_token(o)), Some(o));
        }
        let good = encode_token(40);
        let mut tampered = good.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [
            "",
            "garbage",
            "fhl1",
            "fhl1zzzzzzzzzzzzzzzzzzzzzzzz",
            &tampered,
            &format!("{good}0"),
            "fhl1ééééééééééééé",
        ] {
            assert_eq!(decode_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn request_log_is_bounded_but_counts_are_not() {
        let mut s = Store::default();
        for _ in 0..MAX_RECORDED_REQUESTS + 5 {
            s.record(RecordedRequest {
                target: LIST_FHIR_EXPORT_JOBS_TARGET.into(),
                datastore_id: Some("ds".into()),
                region: None,
                max_results: None,
                next_token: None,
                submitted_after: None,
                job_status: None,
            });
        }
        assert_eq!(s.requests().len(), MAX_RECORDED_REQUESTS);
        assert_eq!(
            s.request_count("ListFHIRExportJobs", "ds"),
            MAX_RECORDED_REQUESTS + 5
        );
        s.clear_requests();
        assert_eq!(
            (
                s.requests().len(),
                s.request_count("ListFHIRExportJobs", "ds")
            ),
            (0, 0)
        );
    }

    fn ds_query(page_size: usize) -> DatastoreQuery {
        DatastoreQuery {
            page_size,
            ..DatastoreQuery::default()
        }
    }

    #[test]
    fn add_datastore_defaults_and_keeps_existing_properties() {
        let mut s = Store::default();
        s.add_datastore("ds");
        let d = s.datastore("ds").unwrap();
        assert_eq!((d.name.as_str(), d.status.as_str()), ("ds", "ACTIVE"));
        assert_eq!(d.created_at, crate::DEFAULT_DATASTORE_CREATED_AT);
        assert!(s.update_datastore("ds", |d| d.status = "UPDATING".into()));
        s.add_datastore("ds");
        assert_eq!(s.datastore("ds").unwrap().status, "UPDATING");
        assert!(!s.update_datastore("nope", |d| d.status = "X".into()));
        s.add("ds", FakeJob::new("j", "COMPLETED", 1.0));
        s.set_datastore("ds", FakeDatastore::new("renamed"));
        assert_eq!(
            s.all::<FakeJob>("ds").len(),
            1,
            "jobs survive set_datastore"
        );
        assert_eq!(s.datastore("ds").unwrap().name, "renamed");
    }

    #[test]
    fn import_jobs_are_separate_from_exports() {
        let mut s = Store::default();
        s.add("ds", FakeJob::new("same", "COMPLETED", 1.0));
        s.add("ds", FakeImportJob::new("same", "IN_PROGRESS", 2.0));
        assert_eq!(s.all::<FakeJob>("ds")[0].status, "COMPLETED");
        assert_eq!(s.all::<FakeImportJob>("ds")[0].status, "IN_PROGRESS");
        let progress = FakeProgress {
            total_number_of_scanned_files: 3,
            ..FakeProgress::default()
        };
        assert!(s.update("ds", "same", |j: &mut FakeImportJob| j.progress =
            Some(progress.clone())));
        assert!(s.update("ds", "same", |j: &mut FakeImportJob| j
            .set_status("COMPLETED", Some(9.0))));
        let job = &s.all::<FakeImportJob>("ds")[0];
        assert_eq!(job.progress.as_ref(), Some(&progress));
        assert_eq!(job.end_time, Some(9.0));
        assert!(
            !s.update("ds", "missing", |j: &mut FakeImportJob| j.progress =
                Some(FakeProgress::default()))
        );
        assert!(!s.update("nope", "same", |j: &mut FakeImportJob| j
            .set_status("X", None)));
        let page = s.list::<FakeImportJob>("ds", "r", &query(10)).unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(s.remove::<FakeImportJob>("ds", "same"));
        assert!(!s.remove::<FakeImportJob>("ds", "same"));
        assert_eq!(s.all::<FakeJob>("ds").len(), 1);
    }

    #[test]
    fn regional_datastores_are_invisible_elsewhere() {
        let mut s = Store::default();
        s.add_datastore("anywhere");
        s.set_datastore("east", FakeDatastore::new("e").in_region("us-east-1"));
        assert!(s.describe("east", "us-east-1").is_some());
        assert!(s.describe("east", "us-west-2").is_none());
        assert!(s.list::<FakeJob>("east", "us-west-2", &query(5)).is_none());
        assert!(s
            .list::<FakeImportJob>("east", "us-west-2", &query(5))
            .is_none());
        assert!(s.describe("anywhere", "eu-west-1").is_some());
        let ids = |region| {
            let mut ids: Vec<String> = s
                .list_datastores(region, &ds_query(10))
                .items
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("us-east-1"), ["anywhere", "east"]);
        assert_eq!(ids("us-west-2"), ["anywhere"]);
    }

    #[test]
    fn datastore_listing_filters_and_pages() {
        let mut s = Store::default();
        for i in 0..25 {
            let status = if i % 5 == 0 { "CREATING" } else { "ACTIVE" };
            s.set_datastore(
                &format!("ds{i:02}"),
                FakeDatastore::new(format!("name-{}", i % 3))
                    .with_status(status)
                    .created(1000.0 + f64::from(i)),
            );
        }
        let mut q = ds_query(10);
        let mut seen = Vec::new();
        loop {
            let page = s.list_datastores("r", &q);
            seen.extend(page.items.into_iter().map(|(id, _)| id));
            match page.next_offset {
                Some(o) => q.offset = o,
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 25);
        assert_ne!(seen, sorted, "listing order is not id order");
        let count = |q: DatastoreQuery| s.list_datastores("r", &q).items.len();
        let q = |f: fn(&mut DatastoreQuery)| {
            let mut q = ds_query(100);
            f(&mut q);
            q
        };
        assert_eq!(count(q(|q| q.status = Some("CREATING".into()))), 5);
        assert_eq!(count(q(|q| q.name = Some("name-1".into()))), 8);
        assert_eq!(count(q(|q| q.name = Some("name".into()))), 0, "exact");
        assert_eq!(count(q(|q| q.created_after = Some(1020.0))), 4, "strict");
        assert_eq!(count(q(|q| q.created_before = Some(1002.0))), 2, "strict");
        let page = s.list_datastores(
            "r",
            &DatastoreQuery {
                offset: usize::MAX,
                ..ds_query(usize::MAX)
            },
        );
        assert!(page.items.is_empty() && page.next_offset.is_none());
    }

    #[test]
    fn operation_faults_win_over_datastore_faults() {
        let mut s = Store::default();
        s.set_fault("ds", Some(Fault::Throttling));
        assert!(s.set_fault_for("DescribeFHIRDatastore", "ds", Some(Fault::InternalError)));
        assert!(s.set_fault_for(
            "HealthLake.ListFHIRImportJobs",
            "ds",
            Some(Fault::AccessDenied)
        ));
        assert!(!s.set_fault_for("ListFHIRDatastores", "ds", Some(Fault::Hang)));
        assert!(!s.set_fault_for("DeleteFHIRDatastore", "ds", Some(Fault::Hang)));
        fn name(s: &Store, op: Operation, ds: &str) -> Option<String> {
            s.fault(op, ds).map(|f| format!("{f:?}"))
        }
        assert_eq!(
            name(&s, Operation::ListExportJobs, "ds").as_deref(),
            Some("Throttling")
        );
        assert_eq!(
            name(&s, Operation::ListImportJobs, "ds").as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(
            name(&s, Operation::DescribeDatastore, "ds").as_deref(),
            Some("InternalError")
        );
        assert_eq!(name(&s, Operation::ListDatastores, "ds"), None);
        assert_eq!(name(&s, Operation::ListExportJobs, "other"), None);
        s.set_list_datastores_fault(Some(Fault::Validation));
        assert_eq!(
            name(&s, Operation::ListDatastores, "").as_deref(),
            Some("Validation")
        );
        s.set_fault("ds", None);
        assert_eq!(name(&s, Operation::ListExportJobs, "ds"), None);
        assert!(s.set_fault_for("ListFHIRImportJobs", "ds", None));
        assert_eq!(name(&s, Operation::ListImportJobs, "ds"), None);
    }

    #[test]
    fn counts_per_operation_and_datastore() {
        let mut s = Store::default();
        let req = |target: &str, ds: Option<&str>| RecordedRequest {
            target: target.into(),
            datastore_id: ds.map(Into::into),
            region: None,
            max_results: None,
            next_token: None,
            submitted_after: None,
            job_status: None,
        };
        s.record(req("HealthLake.ListFHIRImportJobs", Some("ds")));
        s.record(req("HealthLake.ListFHIRImportJobs", Some("ds")));
        s.record(req("HealthLake.DescribeFHIRDatastore", Some("ds")));
        s.record(req("HealthLake.ListFHIRDatastores", None));
        s.record(req("Other.ListFHIRExportJobs", Some("ds")));
        s.record(req("HealthLake.Nope", Some("ds")));
        assert_eq!(s.request_count("ListFHIRImportJobs", "ds"), 2);
        assert_eq!(s.request_count("HealthLake.ListFHIRImportJobs", "ds"), 2);
        assert_eq!(s.request_count("DescribeFHIRDatastore", "ds"), 1);
        assert_eq!(s.request_count("ListFHIRDatastores", ""), 1);
        assert_eq!(s.request_count("ListFHIRExportJobs", "ds"), 0);
        assert_eq!(s.request_count("Nope", "ds"), 0);
        assert_eq!(s.requests().len(), 6);
    }
}
