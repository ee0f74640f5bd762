//! State of the fake: datastores with their jobs, injected faults and the request log, plus the
//! filter/paging logic of `ListFHIRExportJobs`.
//!
//! Kept free of I/O and async so the paging and filter edge cases can be unit tested directly.

use std::collections::{HashMap, VecDeque};

use super::{FakeJob, Fault, RecordedRequest, LIST_FHIR_EXPORT_JOBS_TARGET};

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

/// Filters and position of one listing, already validated.
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
    fn matches(&self, job: &FakeJob) -> bool {
        self.job_status.as_deref().is_none_or(|s| job.status == s)
            && self
                .job_name
                .as_deref()
                .is_none_or(|n| job.name.as_deref() == Some(n))
            && self.submitted_after.is_none_or(|t| job.submit_time > t)
            && self.submitted_before.is_none_or(|t| job.submit_time < t)
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Page {
    pub(crate) jobs: Vec<FakeJob>,
    /// Offset of the next page, `None` on the last page.
    pub(crate) next_offset: Option<usize>,
}

/// Jobs of one datastore, kept sorted by [`order_key`] so listings need no sort.
#[derive(Debug, Default)]
struct Datastore {
    jobs: Vec<FakeJob>,
}

impl Datastore {
    fn position(&self, job_id: &str) -> Result<usize, usize> {
        let key = order_key(job_id);
        self.jobs.binary_search_by(|j| order_key(&j.id).cmp(&key))
    }
}

/// Listing order: by a hash of the job id, so it is stable but unrelated to submission order
/// (the API promises no order and clients must not rely on one).
fn order_key(job_id: &str) -> (u64, &str) {
    (fnv1a(job_id.as_bytes()), job_id)
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
    faults: HashMap<String, Fault>,
    log: VecDeque<RecordedRequest>,
    counts: HashMap<String, usize>,
}

impl Store {
    pub(crate) fn add_datastore(&mut self, datastore_id: &str) {
        self.datastores.entry(datastore_id.to_owned()).or_default();
    }

    pub(crate) fn remove_datastore(&mut self, datastore_id: &str) {
        self.datastores.remove(datastore_id);
    }

    pub(crate) fn datastore_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.datastores.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(crate) fn add_job(&mut self, datastore_id: &str, job: FakeJob) {
        let ds = self.datastores.entry(datastore_id.to_owned()).or_default();
        match ds.position(&job.id) {
            Ok(i) => ds.jobs[i] = job,
            Err(i) => ds.jobs.insert(i, job),
        }
    }

    pub(crate) fn remove_job(&mut self, datastore_id: &str, job_id: &str) -> bool {
        let Some(ds) = self.datastores.get_mut(datastore_id) else {
            return false;
        };
        match ds.position(job_id) {
            Ok(i) => {
                ds.jobs.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn set_job_status(
        &mut self,
        datastore_id: &str,
        job_id: &str,
        status: &str,
        end_time: Option<f64>,
    ) -> bool {
        let Some(ds) = self.datastores.get_mut(datastore_id) else {
            return false;
        };
        let Ok(i) = ds.position(job_id) else {
            return false;
        };
        let job = &mut ds.jobs[i];
        status.clone_into(&mut job.status);
        job.end_time = end_time;
        true
    }

    pub(crate) fn jobs(&self, datastore_id: &str) -> Vec<FakeJob> {
        let mut jobs = self
            .datastores
            .get(datastore_id)
            .map(|ds| ds.jobs.clone())
            .unwrap_or_default();
        jobs.sort_by(|a, b| {
            a.submit_time
                .total_cmp(&b.submit_time)
                .then_with(|| a.id.cmp(&b.id))
        });
        jobs
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

    pub(crate) fn fault(&self, datastore_id: &str) -> Option<Fault> {
        self.faults.get(datastore_id).cloned()
    }

    pub(crate) fn record(&mut self, request: RecordedRequest) {
        if request.target == LIST_FHIR_EXPORT_JOBS_TARGET {
            if let Some(id) = &request.datastore_id {
                *self.counts.entry(id.clone()).or_default() += 1;
            }
        }
        if self.log.len() >= MAX_RECORDED_REQUESTS {
            self.log.pop_front();
        }
        self.log.push_back(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.log.iter().cloned().collect()
    }

    pub(crate) fn request_count(&self, datastore_id: &str) -> usize {
        self.counts.get(datastore_id).copied().unwrap_or(0)
    }

    pub(crate) fn clear_requests(&mut self) {
        self.log.clear();
        self.counts.clear();
    }

    /// Filters, then pages. `None` when the datastore does not exist. An offset past the end
    /// yields an empty last page (jobs may have been removed between pages).
    pub(crate) fn list(&self, datastore_id: &str, query: &ListQuery) -> Option<Page> {
        let ds = self.datastores.get(datastore_id)?;
        let page_size = query.page_size.max(1);
        let mut jobs: Vec<FakeJob> = ds
            .jobs
            .iter()
            .filter(|j| query.matches(j))
            .skip(query.offset)
            .take(page_size.saturating_add(1))
            .cloned()
            .collect();
        let next_offset = if jobs.len() > page_size {
            jobs.truncate(page_size);
            Some(query.offset.saturating_add(page_size))
        } else {
            None
        };
        Some(Page { jobs, next_offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(n: usize) -> Store {
        let mut s = Store::default();
        s.add_datastore("ds");
        for i in 0..n {
            s.add_job(
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
            let page = s.list("ds", &q).expect("datastore exists");
            pages += 1;
            all.extend(page.jobs);
            match page.next_offset {
                Some(o) => q.offset = decode_token(&encode_token(o)).expect("round trip"),
                None => return (all, pages),
            }
        }
    }

    #[test]
    fn unknown_datastore_is_none() {
        assert_eq!(Store::default().list("nope", &query(10)), None);
    }

    #[test]
    fn empty_datastore_gives_one_empty_last_page() {
        let s = store_with(0);
        let page = s.list("ds", &query(10)).unwrap();
        assert!(page.jobs.is_empty());
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
        let page = s.list("ds", &q).unwrap();
        assert!(page.jobs.is_empty());
        assert_eq!(page.next_offset, None);
    }

    #[test]
    fn huge_offset_and_page_size_do_not_overflow() {
        let s = store_with(3);
        let q = ListQuery {
            offset: usize::MAX,
            ..query(usize::MAX)
        };
        assert_eq!(s.list("ds", &q).unwrap().jobs.len(), 0);
    }

    #[test]
    fn filters_apply_before_paging() {
        let mut s = store_with(0);
        for i in 0..30 {
            let status = if i % 3 == 0 { "FAILED" } else { "COMPLETED" };
            s.add_job(
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
            .list("ds", &q)
            .unwrap()
            .jobs
            .iter()
            .map(|j| j.submit_time)
            .collect();
        times.sort_by(f64::total_cmp);
        assert_eq!(times, vec![4.0, 5.0, 6.0]);
    }

    #[test]
    fn name_filter_is_exact_and_skips_unnamed() {
        let mut s = store_with(3);
        s.add_job("ds", FakeJob::new("n1", "COMPLETED", 1.0).named("nightly"));
        s.add_job(
            "ds",
            FakeJob::new("n2", "COMPLETED", 1.0).named("nightly-2"),
        );
        let q = ListQuery {
            job_name: Some("nightly".into()),
            ..query(100)
        };
        let page = s.list("ds", &q).unwrap();
        assert_eq!(page.jobs.len(), 1);
        assert_eq!(page.jobs[0].id, "n1");
    }

    #[test]
    fn add_job_replaces_same_id_and_set_status_works() {
        let mut s = store_with(0);
        s.add_job("ds", FakeJob::new("a", "SUBMITTED", 1.0));
        s.add_job("ds", FakeJob::new("a", "QUEUED", 1.0));
        assert_eq!(s.jobs("ds").len(), 1);
        assert!(s.set_job_status("ds", "a", "ARCHIVED", Some(5.5)));
        assert_eq!(s.jobs("ds")[0].status, "ARCHIVED");
        assert_eq!(s.jobs("ds")[0].end_time, Some(5.5));
        assert!(!s.set_job_status("ds", "missing", "X", None));
        assert!(!s.set_job_status("other", "a", "X", None));
        assert!(s.remove_job("ds", "a"));
        assert!(!s.remove_job("ds", "a"));
    }

    #[test]
    fn jobs_are_returned_in_submission_order() {
        let s = store_with(50);
        let times: Vec<f64> = s.jobs("ds").iter().map(|j| j.submit_time).collect();
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
        assert_eq!(s.request_count("ds"), MAX_RECORDED_REQUESTS + 5);
        s.clear_requests();
        assert_eq!((s.requests().len(), s.request_count("ds")), (0, 0));
    }
}
