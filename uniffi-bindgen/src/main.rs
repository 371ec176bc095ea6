//! `uniffi-bindgen`: generates the foreign-language bindings of `hamlet-mobile` from its compiled
//! library, for example
//! `uniffi-bindgen generate --library target/debug/libhamlet_mobile.so --language kotlin --out-dir out`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
