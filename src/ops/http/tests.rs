use super::*;

const NOW_US: u64 = 1_750_000_000_000_000;

#[test]
fn report_params_default_to_all_time_up_to_now_in_one_total_row() {
    let q = ReportParams::default().query(NOW_US).unwrap();
    assert_eq!(q.range, TimeRange::new(0, NOW_US + 1).unwrap());
    assert!(q.group_by.is_empty());
    assert_eq!(q.filter, Scope::all());
}

#[test]
fn report_params_parse_fields_filters_and_spans() {
    let p = ReportParams {
        group_by: Some("tenant, model,label:team".into()),
        tenant: Some("acme".into()),
        last: Some("1h".into()),
        ..ReportParams::default()
    };
    let q = p.query(NOW_US).unwrap();
    assert_eq!(q.group_by, [Field::Tenant, Field::Model, Field::Label("team".into())]);
    assert_eq!(q.filter, Scope::all().tenant("acme"));
    assert_eq!(q.range, TimeRange::new(NOW_US + 1 - 3_600_000_000, NOW_US + 1).unwrap());
    let p = ReportParams {
        from: Some("2025-01-01T00:00:00Z".into()),
        to: Some("2025-01-02T00:00:00Z".into()),
        ..ReportParams::default()
    };
    let q = p.query(NOW_US).unwrap();
    assert_eq!(q.range.to_us - q.range.from_us, 86_400_000_000);
}

#[test]
fn bad_report_params_are_named() {
    let cases = [
        (
            ReportParams {
                group_by: Some("colour".into()),
                ..ReportParams::default()
            },
            "colour",
        ),
        (
            ReportParams {
                from: Some("yesterday".into()),
                ..ReportParams::default()
            },
            "from: `yesterday`",
        ),
        (
            ReportParams {
                last: Some("forever".into()),
                ..ReportParams::default()
            },
            "last: `forever`",
        ),
        (
            ReportParams {
                from: Some("2025-01-01T00:00:00Z".into()),
                last: Some("1h".into()),
                ..ReportParams::default()
            },
            "not both",
        ),
        (
            ReportParams {
                from: Some("2025-01-02T00:00:00Z".into()),
                to: Some("2025-01-01T00:00:00Z".into()),
                ..ReportParams::default()
            },
            "not before its end",
        ),
    ];
    for (params, words) in cases {
        let e = params.query(NOW_US).unwrap_err();
        assert!(e.contains(words), "{words}: {e}");
    }
}
