//! Compaction of retained batches: a batch decoded in place references its Kafka message, so
//! keeping it in the live ring after its lake commit would keep librdkafka's fetch buffer alive.
//! A deep copy (counted as `compacted` bytes) releases it.

use arrow::array::{Array, ArrayData, RecordBatch, StructArray};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;

/// A copy of `batch` whose buffers are all newly allocated, and the bytes copied.
pub(super) fn deep_copy(batch: &RecordBatch) -> (RecordBatch, u64) {
    let mut copied = 0;
    let data = copy_data(&StructArray::from(batch.clone()).into_data(), &mut copied);
    let schema: SchemaRef = batch.schema();
    let copy = RecordBatch::from(StructArray::from(data))
        .with_schema(schema)
        .expect("a copy has its original's schema");
    (copy, copied)
}

fn copy_data(data: &ArrayData, copied: &mut u64) -> ArrayData {
    let mut copy_buffer = |b: &Buffer| {
        *copied += b.len() as u64;
        Buffer::from_slice_ref(b.as_slice())
    };
    let buffers: Vec<Buffer> = data.buffers().iter().map(&mut copy_buffer).collect();
    let nulls = data.nulls().map(|n| {
        let b = copy_buffer(n.buffer());
        arrow::buffer::NullBuffer::new(arrow::buffer::BooleanBuffer::new(b, n.offset(), n.len()))
    });
    let children: Vec<ArrayData> = data
        .child_data()
        .iter()
        .map(|c| copy_data(c, copied))
        .collect();
    let builder = data
        .clone()
        .into_builder()
        .buffers(buffers)
        .nulls(nulls)
        .child_data(children);
    // SAFETY: every buffer is a byte-for-byte copy of a buffer of valid ArrayData, with the
    // same type, length, offset and null layout, so the copy is exactly as valid.
    unsafe { builder.build_unchecked() }
}
