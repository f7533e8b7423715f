//! PostHog-shaped analytics events (about 1 KB per row): a uuid, an event name, a distinct id,
//! a timestamp, a JSON `properties` string and a few typed columns. `seq` is a unique, gapless
//! sequence number so consumers can check counts and sums exactly.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

const EVENTS: &[&str] = &[
    "$pageview",
    "$autocapture",
    "$pageleave",
    "$identify",
    "signed_up",
    "purchase",
    "feature_flag_called",
    "$exception",
];
const BROWSERS: &[&str] = &["Chrome", "Firefox", "Safari", "Edge", "Mobile Safari"];
const OSES: &[&str] = &["Mac OS X", "Windows", "Linux", "iOS", "Android"];
const COUNTRIES: &[(&str, &str)] = &[
    ("DE", "Berlin"),
    ("US", "San Francisco"),
    ("GB", "London"),
    ("FR", "Paris"),
    ("BR", "São Paulo"),
    ("JP", "Tokyo"),
];
const PATHS: &[&str] = &[
    "/",
    "/pricing",
    "/docs/getting-started",
    "/project/1/insights",
    "/project/1/dashboard/42",
    "/signup",
    "/checkout",
];

/// The Arrow schema of generated events.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("uuid", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("properties", DataType::Utf8, false),
        Field::new("team_id", DataType::Int32, false),
        Field::new("session_duration_ms", DataType::Int64, true),
        Field::new("revenue", DataType::Float64, true),
        Field::new("is_mobile", DataType::Boolean, false),
    ]))
}

/// A deterministic event generator: a row's content depends only on the seed and its `seq`, so
/// any split into batches or generators yields the same rows.
pub struct EventGen {
    seed: u64,
    next_seq: i64,
    schema: SchemaRef,
    /// Microseconds since the epoch of the next event.
    clock_us: i64,
}

impl EventGen {
    /// A generator starting at `seq` 0.
    pub fn new(seed: u64) -> Self {
        Self::starting_at(seed, 0)
    }

    /// A generator whose first row has `seq = start`.
    pub fn starting_at(seed: u64, start: i64) -> Self {
        EventGen {
            seed,
            next_seq: start,
            schema: schema(),
            // 2026-01-01T00:00:00Z, plus one millisecond per event.
            clock_us: 1_767_225_600_000_000 + start * 1_000,
        }
    }

    /// The `seq` the next row will get.
    pub fn next_seq(&self) -> i64 {
        self.next_seq
    }
}

/// Which rows a generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    /// PostHog-shaped events, about 1 KB per row ([`generate`]).
    Events,
    /// A narrow numeric reading, 40 bytes per row in Arrow ([`generate_narrow`]).
    Narrow,
}

impl Dataset {
    /// The Arrow schema of the dataset's rows.
    pub fn schema(self) -> SchemaRef {
        match self {
            Dataset::Events => schema(),
            Dataset::Narrow => narrow_schema(),
        }
    }

    /// The next `rows` rows of this dataset.
    pub fn generate(self, g: &mut EventGen, rows: usize) -> RecordBatch {
        match self {
            Dataset::Events => generate(g, rows),
            Dataset::Narrow => generate_narrow(g, rows),
        }
    }
}

/// The narrow dataset's schema: six fixed-width, non-null columns (8+8+4+8+8+4 = 40 bytes a row).
pub fn narrow_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("sensor_id", DataType::Int32, false),
        Field::new("value", DataType::Float64, false),
        Field::new("reading", DataType::Float64, false),
        Field::new("status", DataType::Int32, false),
    ]))
}

/// Generates the next `rows` narrow readings as one batch (same seq/clock rules as events).
pub fn generate_narrow(g: &mut EventGen, rows: usize) -> RecordBatch {
    let mut seq = Int64Builder::with_capacity(rows);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut sensor = Int32Builder::with_capacity(rows);
    let mut value = Float64Builder::with_capacity(rows);
    let mut reading = Float64Builder::with_capacity(rows);
    let mut status = Int32Builder::with_capacity(rows);
    for _ in 0..rows {
        let s = g.next_seq;
        let mut r =
            fastrand::Rng::with_seed(g.seed ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        g.next_seq += 1;
        g.clock_us += 1_000;
        seq.append_value(s);
        ts.append_value(g.clock_us);
        sensor.append_value(r.i32(..10_000));
        value.append_value(r.u32(..1_000_000) as f64 / 1000.0);
        reading.append_value(20.0 + r.u32(..2_000) as f64 / 100.0);
        status.append_value(if r.u8(..50) == 0 { 1 } else { 0 });
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(seq.finish()),
        Arc::new(ts.finish()),
        Arc::new(sensor.finish()),
        Arc::new(value.finish()),
        Arc::new(reading.finish()),
        Arc::new(status.finish()),
    ];
    RecordBatch::try_new(narrow_schema(), cols).expect("generated columns match the schema")
}

/// Generates the next `rows` events as one batch.
pub fn generate(g: &mut EventGen, rows: usize) -> RecordBatch {
    let mut seq = Int64Builder::with_capacity(rows);
    let mut uuid = StringBuilder::with_capacity(rows, rows * 36);
    let mut event = StringBuilder::with_capacity(rows, rows * 12);
    let mut distinct = StringBuilder::with_capacity(rows, rows * 14);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut props = StringBuilder::with_capacity(rows, rows * 800);
    let mut team = Int32Builder::with_capacity(rows);
    let mut duration = Int64Builder::with_capacity(rows);
    let mut revenue = Float64Builder::with_capacity(rows);
    let mut mobile = BooleanBuilder::with_capacity(rows);
    let mut buf = String::with_capacity(1024);
    for _ in 0..rows {
        let s = g.next_seq;
        let mut rng =
            fastrand::Rng::with_seed(g.seed ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let r = &mut rng;
        g.next_seq += 1;
        g.clock_us += 1_000;
        seq.append_value(s);
        buf.clear();
        let (a, b) = (r.u64(..), r.u64(..));
        let _ = write!(
            buf,
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        );
        uuid.append_value(&buf);
        let name = EVENTS[r.usize(..EVENTS.len())];
        event.append_value(name);
        let user = r.u32(..50_000);
        buf.clear();
        let _ = write!(buf, "user_{user:05}");
        distinct.append_value(&buf);
        ts.append_value(g.clock_us);
        let is_mobile = r.u8(..4) == 0;
        let (country, city) = COUNTRIES[r.usize(..COUNTRIES.len())];
        let path = PATHS[r.usize(..PATHS.len())];
        buf.clear();
        let _ = write!(
            buf,
            concat!(
                r#"{{"$current_url":"https://app.example.com{path}?ref={r1:x}","$host":"app.example.com","$pathname":"{path}","#,
                r#""$browser":"{browser}","$browser_version":{bv}.0,"$os":"{os}","$device_type":"{device}","#,
                r#""$screen_width":{sw},"$screen_height":{sh},"$viewport_width":{vw},"$viewport_height":{vh},"#,
                r#""$referrer":"https://www.google.com/search?q=product+analytics+{r2:x}","$referring_domain":"www.google.com","#,
                r#""$lib":"web","$lib_version":"1.96.{lv}","$session_id":"{sid:016x}{sid2:016x}","$window_id":"{wid:016x}","#,
                r#""$geoip_country_code":"{country}","$geoip_city_name":"{city}","$geoip_time_zone":"Europe/Berlin","#,
                r#""utm_source":"newsletter","utm_medium":"email","utm_campaign":"launch-week-{lw}","plan":"{plan}","#,
                r#""$feature_flags":["new-onboarding","billing-v2","session-replay"],"$active_feature_flags":{af},"#,
                r#""token":"phc_{tok:032x}","$insert_id":"{ins:016x}","$time":{time}.{ms:03}}}"#
            ),
            path = path,
            r1 = r.u32(..),
            browser = BROWSERS[r.usize(..BROWSERS.len())],
            bv = 100 + r.u32(..30),
            os = OSES[r.usize(..OSES.len())],
            device = if is_mobile { "Mobile" } else { "Desktop" },
            sw = if is_mobile { 390 } else { 1920 },
            sh = if is_mobile { 844 } else { 1080 },
            vw = 300 + r.u32(..1600),
            vh = 300 + r.u32(..800),
            r2 = r.u32(..),
            lv = r.u8(..20),
            sid = r.u64(..),
            sid2 = r.u64(..),
            wid = r.u64(..),
            country = country,
            city = city,
            lw = r.u8(..12),
            plan = if r.bool() { "enterprise" } else { "free" },
            af = r.u8(..4),
            tok = (r.u64(..) as u128) << 64 | r.u64(..) as u128,
            ins = r.u64(..),
            time = g.clock_us / 1_000_000,
            ms = (g.clock_us / 1_000) % 1_000,
        );
        props.append_value(&buf);
        team.append_value(1 + r.i32(..8));
        if r.u8(..5) == 0 {
            duration.append_null();
        } else {
            duration.append_value(r.i64(..3_600_000));
        }
        if name == "purchase" {
            revenue.append_value(r.u32(..100_000) as f64 / 100.0);
        } else {
            revenue.append_null();
        }
        mobile.append_value(is_mobile);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(seq.finish()),
        Arc::new(uuid.finish()),
        Arc::new(event.finish()),
        Arc::new(distinct.finish()),
        Arc::new(ts.finish()),
        Arc::new(props.finish()),
        Arc::new(team.finish()),
        Arc::new(duration.finish()),
        Arc::new(revenue.finish()),
        Arc::new(mobile.finish()),
    ];
    RecordBatch::try_new(g.schema.clone(), cols).expect("generated columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn rows_are_deterministic_sequential_and_about_a_kilobyte() {
        let mut g = EventGen::new(42);
        let a = generate(&mut g, 1000);
        let b = generate(&mut g, 10);
        let seqs: Vec<i64> = a.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 1000);
        let again = generate(&mut EventGen::new(42), 1000);
        assert_eq!(a, again);
        let mut split = EventGen::starting_at(42, 500);
        assert_eq!(generate(&mut split, 500), a.slice(500, 500));
        let props = a.column(5).as_string::<i32>();
        let avg = props.value_data().len() / props.len();
        assert!((600..1000).contains(&avg), "average properties size {avg}");
        assert!(
            props.value(0).starts_with("{\"$current_url\""),
            "{}",
            props.value(0)
        );
        assert!(props.value(0).ends_with('}'));
    }

    #[test]
    fn narrow_rows_are_deterministic_forty_bytes_and_share_the_sequence() {
        let mut g = EventGen::new(42);
        let a = Dataset::Narrow.generate(&mut g, 1000);
        assert_eq!(a.schema(), narrow_schema());
        assert_eq!(g.next_seq(), 1000);
        let seqs: Vec<i64> = a.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
        let fixed: usize = a
            .columns()
            .iter()
            .map(|c| c.to_data().buffers()[0].len())
            .sum();
        assert_eq!(fixed, 40 * 1000);
        assert!(a.columns().iter().all(|c| c.null_count() == 0));
        let mut split = EventGen::starting_at(42, 500);
        assert_eq!(generate_narrow(&mut split, 500), a.slice(500, 500));
        assert_eq!(Dataset::Events.schema(), schema());
    }
}
