//! The Arrow C Data Interface boundary towards DuckDB: an `ArrowArrayStream` over RecordBatches
//! that sluice already holds. Exporting a batch shares its buffers (no copy): DuckDB reads the
//! very memory the IPC decoder produced (in most cases the Kafka payload itself).
//!
//! Why not arrow-rs's `FFI_ArrowArrayStream::new`: DuckDB's `duckdb_arrow_scan` takes the schema
//! from `get_schema` and clears the root's `release` without calling it, so a schema freshly
//! exported per call would leak on every flush. This stream owns one exported schema and hands
//! out shallow copies whose root `release` does nothing (as DuckDB's own
//! `duckdb_arrow_array_scan` wrapper does); the owned schema is freed when the stream is dropped.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Mutex;

use arrow::array::{Array, RecordBatch, StructArray};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::FFI_ArrowArrayStream;

use super::coalesce::{Coalesce, Coalesced, Feed};

/// The C `ArrowSchema` layout (Arrow C Data Interface), used only to replace the `release`
/// callback of a shallow copy: arrow-rs keeps `FFI_ArrowSchema`'s fields private.
#[repr(C)]
struct RawArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut RawArrowSchema,
    dictionary: *mut RawArrowSchema,
    release: Option<unsafe extern "C" fn(*mut RawArrowSchema)>,
    private_data: *mut c_void,
}

const _: () = assert!(
    std::mem::size_of::<RawArrowSchema>() == std::mem::size_of::<FFI_ArrowSchema>()
        && std::mem::align_of::<RawArrowSchema>() == std::mem::align_of::<FFI_ArrowSchema>()
);

struct Private {
    schema: FFI_ArrowSchema,
    batches: Mutex<Feed>,
}

/// An `ArrowArrayStream` over batches of one schema, owned by sluice, scanned by DuckDB.
pub struct BatchStream {
    // Boxed so its address stays fixed: DuckDB keeps a pointer to it in the view.
    inner: Box<FFI_ArrowArrayStream>,
}

impl BatchStream {
    /// A stream yielding `batches` (all of schema `schema`) in order, each as it is.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self, ArrowError> {
        Self::with_feed(Feed::new(schema, batches, None))
    }

    /// A stream yielding `batches` (all of schema `schema`) in order, runs of small ones
    /// joined under `policy` (see [`super::coalesce`]).
    pub fn coalescing(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        policy: Coalesce,
    ) -> Result<Self, ArrowError> {
        Self::with_feed(Feed::new(schema, batches, Some(policy)))
    }

    fn with_feed(feed: Feed) -> Result<Self, ArrowError> {
        let exported = FFI_ArrowSchema::try_from(feed.schema().as_ref())?;
        let private = Box::new(Private {
            schema: exported,
            batches: Mutex::new(feed),
        });
        let inner = Box::new(FFI_ArrowArrayStream {
            get_schema: Some(get_schema),
            get_next: Some(get_next),
            get_last_error: Some(get_last_error),
            release: Some(release),
            private_data: Box::into_raw(private).cast(),
        });
        Ok(BatchStream { inner })
    }

    /// What was joined of the batches scanned so far.
    pub fn coalesced(&self) -> Coalesced {
        let private = self.inner.private_data as *const Private;
        if private.is_null() {
            return Coalesced::default();
        }
        // SAFETY: private_data was set by `with_feed` and is freed only by `release`, which
        // runs when `inner` is dropped (DuckDB's copy of the struct has a no-op release).
        crate::sync::lock(unsafe { &(*private).batches }).coalesced()
    }

    /// The stream as DuckDB's opaque handle type.
    pub fn as_duckdb_stream(&mut self) -> libduckdb_sys::duckdb_arrow_stream {
        (&mut *self.inner as *mut FFI_ArrowArrayStream).cast()
    }
}

// SAFETY: the private data is a Send schema export plus Mutex-guarded batches; the raw pointers
// in the stream struct point only into that Box, which moves with the stream.
unsafe impl Send for BatchStream {}

/// # Safety
/// `stream` must be a live stream created by [`BatchStream::new`]; `out` must be writable.
unsafe extern "C" fn get_schema(
    stream: *mut FFI_ArrowArrayStream,
    out: *mut FFI_ArrowSchema,
) -> c_int {
    // SAFETY: private_data was set by BatchStream::new and is freed only by `release`.
    let private = unsafe { &*((*stream).private_data as *const Private) };
    // SAFETY: `out` is writable per the C stream contract; the copy is shallow, so its children
    // and dictionary point into the schema owned by `private`.
    unsafe {
        std::ptr::copy_nonoverlapping(&private.schema as *const FFI_ArrowSchema, out, 1);
        (*(out as *mut RawArrowSchema)).release = Some(release_shallow_schema);
    }
    0
}

/// # Safety
/// `schema` must be a shallow copy handed out by `get_schema`.
unsafe extern "C" fn release_shallow_schema(schema: *mut RawArrowSchema) {
    // SAFETY: marks the copy released, as the C Data Interface requires; owns nothing.
    unsafe { (*schema).release = None };
}

/// # Safety
/// `stream` must be a live stream created by [`BatchStream::new`]; `out` must be writable.
unsafe extern "C" fn get_next(
    stream: *mut FFI_ArrowArrayStream,
    out: *mut FFI_ArrowArray,
) -> c_int {
    // SAFETY: private_data was set by BatchStream::new and is freed only by `release`.
    let private = unsafe { &*((*stream).private_data as *const Private) };
    let next = crate::sync::lock(&private.batches).next();
    let array = match next {
        // Shares the batch's buffers: FFI_ArrowArray holds references, DuckDB releases them.
        Some(batch) => FFI_ArrowArray::new(&StructArray::from(batch).into_data()),
        // A released (empty) array marks the end of the stream.
        None => FFI_ArrowArray::empty(),
    };
    // SAFETY: `out` is writable per the C stream contract; ownership passes to the consumer.
    unsafe { std::ptr::write(out, array) };
    0
}

/// # Safety
/// Any stream pointer; sluice's stream never reports errors.
unsafe extern "C" fn get_last_error(_stream: *mut FFI_ArrowArrayStream) -> *const c_char {
    std::ptr::null()
}

/// # Safety
/// `stream` must be a stream created by [`BatchStream::new`], released at most once.
unsafe extern "C" fn release(stream: *mut FFI_ArrowArrayStream) {
    // SAFETY: `stream` is valid; private_data is either our Box or null after a release.
    unsafe {
        let private = (*stream).private_data as *mut Private;
        if !private.is_null() {
            drop(Box::from_raw(private));
        }
        (*stream).private_data = std::ptr::null_mut();
        (*stream).release = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatchReader, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn stream_yields_batches_then_end_and_schema_copies_are_shallow() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            ],
        )
        .unwrap();
        let mut s = BatchStream::new(schema.clone(), vec![b.clone(), b.clone()]).unwrap();
        let raw = s.as_duckdb_stream() as *mut FFI_ArrowArrayStream;
        // Read it back through arrow-rs's importer, which calls get_schema/get_next/release of
        // the exported structs exactly like a C consumer would.
        // SAFETY: `raw` is a live stream; the reader takes the struct by value and we forget
        // our box so release runs once (from the reader).
        let reader = unsafe {
            let taken = std::ptr::read(raw);
            std::ptr::write(raw, FFI_ArrowArrayStream::empty());
            arrow::ffi_stream::ArrowArrayStreamReader::try_new(taken).unwrap()
        };
        assert_eq!(reader.schema(), schema);
        let got: Vec<RecordBatch> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], b);
        assert_eq!(got[1], b);
        drop(s);
    }
}
