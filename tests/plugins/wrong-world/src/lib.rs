//! A well-formed component of some other world: it exports `transform`
//! instead of the receiver functions.

#![allow(missing_docs, unsafe_code)] // generated bindings

wit_bindgen::generate!({
    inline: "
        package test:other;
        world other {
            export transform: func(input: string) -> string;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn transform(input: String) -> String {
        input.to_uppercase()
    }
}

export!(Other);
