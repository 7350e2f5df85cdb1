#![no_main]
//! fluxd's image-name rules on arbitrary text: never panic, and anything
//! accepted has no tag or digest left and no empty path.
libfuzzer_sys::fuzz_target!(|s: &str| {
    if let Ok(name) = flux_recv::image::parse(s) {
        assert!(!name.image.is_empty(), "{s:?}");
        assert!(!name.image.contains(':'), "{s:?}");
        assert!(
            !name.image.contains('@') && !name.domain.contains('@'),
            "{s:?}"
        );
        assert!(
            !name.image.starts_with('/') && !name.image.ends_with('/'),
            "{s:?}"
        );
    }
});
