//! Receiver components built by hand, in core Wasm, for the sandbox's own
//! tests: each exports the 0.1 receiver world and imports nothing, and its
//! `accepts` does exactly one hostile thing ([`Accepts`]). No guest
//! toolchain is needed, so every limit can be hit from `cargo test -p
//! prism-engine`; `prism-e2e` uses the same builder (feature `testkit`) for
//! the attacks it measures against a whole process.
//!
//! The main module holds the canonical ABI's memory (16 pages) and a bump
//! allocator reset after every call; `format` and `format-batch` answer
//! `ok([])`.

#![allow(missing_docs)] // test support: the variants say what they do

use wasm_encoder::{
    BlockType, CodeSection, ComponentBuilder, ComponentExportKind, ComponentValType, ConstExpr,
    ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, ImportSection,
    Instruction as I, MemorySection, MemoryType, Module, ModuleArg, PrimitiveValType as P,
    TypeSection, ValType,
};

/// What `accepts` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Answers true at once (the control).
    True,
    /// Spins forever.
    Loop,
    /// Executes `unreachable` (a Rust panic ends the same way).
    Trap,
    /// Calls itself without end.
    Recurse,
    /// Grows its memory by this many MiB and writes every byte; a refused
    /// grow traps, as a Rust guest's allocator aborts.
    GrowMib(u32),
    /// Runs `count` extra core modules, each growing a memory of its own
    /// by `mib` MiB and touching it (a composed component may have many
    /// memories); answers true. A refused grow traps when `strict`, and is
    /// left alone otherwise (to measure what the process holds).
    Hogs { count: u32, mib: u32, strict: bool },
}

fn memory(min_pages: u64) -> MemoryType {
    MemoryType {
        minimum: min_pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    }
}

/// `memory.grow` memory `mem` by `pages` and fill what it got with ones,
/// leaving a refused grow alone (`refused` runs then, e.g. `unreachable`).
fn grow_and_touch(f: &mut Function, mem: u32, pages: u32, refused: &[I<'static>]) {
    f.instruction(&I::I32Const(pages as i32));
    f.instruction(&I::MemoryGrow(mem));
    f.instruction(&I::I32Const(-1));
    f.instruction(&I::I32Eq);
    f.instruction(&I::If(BlockType::Empty));
    for i in refused {
        f.instruction(i);
    }
    f.instruction(&I::Else);
    // Fill from the old end: memory.size − pages, in bytes.
    f.instruction(&I::MemorySize(mem));
    f.instruction(&I::I32Const(pages as i32));
    f.instruction(&I::I32Sub);
    f.instruction(&I::I32Const(16));
    f.instruction(&I::I32Shl);
    f.instruction(&I::I32Const(1));
    f.instruction(&I::I32Const((pages as i64 * 65536) as i32));
    f.instruction(&I::MemoryFill(mem));
    f.instruction(&I::End);
}

/// A module with one memory, empty at first, exporting `hog`: the first
/// call grows it by `mib` MiB and writes every byte (a refused grow traps
/// when `strict`).
fn hog(mib: u32, strict: bool) -> Module {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(memory(0));
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export("hog", ExportKind::Func, 0);
    m.section(&exports);
    let mut f = Function::new([]);
    f.instruction(&I::MemorySize(0));
    f.instruction(&I::I32Eqz);
    f.instruction(&I::If(BlockType::Empty));
    let refused: &[I<'static>] = if strict { &[I::Unreachable] } else { &[] };
    grow_and_touch(&mut f, 0, mib * 16, refused);
    f.instruction(&I::End);
    f.instruction(&I::End);
    let mut code = CodeSection::new();
    code.function(&f);
    m.section(&code);
    m
}

/// The module the canonical ABI talks to.
fn main_module(accepts: Accepts) -> Module {
    let hogs = match accepts {
        Accepts::Hogs { count, .. } => count,
        _ => 0,
    };
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    // accepts and format: the change record flattens to 13 × i32 and an i64.
    let mut change = vec![ValType::I32; 13];
    change.push(ValType::I64);
    types.ty().function(change.clone(), [ValType::I32]);
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I32]);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    m.section(&types);
    let mut imports = ImportSection::new();
    for h in 0..hogs {
        imports.import(
            &format!("h{h}"),
            "hog",
            wasm_encoder::EntityType::Function(0),
        );
    }
    m.section(&imports);
    let mut funcs = FunctionSection::new();
    // accepts, format, format-batch, cabi_realloc, recurse
    for ty in [1, 1, 2, 3, 0] {
        funcs.function(ty);
    }
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(memory(16));
    m.section(&mems);
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1024),
    );
    m.section(&globals);
    let (f_accepts, f_format, f_batch, f_realloc, f_recurse) =
        (hogs, hogs + 1, hogs + 2, hogs + 3, hogs + 4);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("accepts", ExportKind::Func, f_accepts);
    exports.export("format", ExportKind::Func, f_format);
    exports.export("format-batch", ExportKind::Func, f_batch);
    exports.export("cabi_realloc", ExportKind::Func, f_realloc);
    m.section(&exports);

    let reset = [I::I32Const(1024), I::GlobalSet(0)];
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    match accepts {
        Accepts::True => {}
        Accepts::Loop => {
            f.instruction(&I::Loop(BlockType::Empty));
            f.instruction(&I::Br(0));
            f.instruction(&I::End);
        }
        Accepts::Trap => {
            f.instruction(&I::Unreachable);
        }
        Accepts::Recurse => {
            f.instruction(&I::Call(f_recurse));
        }
        Accepts::GrowMib(mib) => grow_and_touch(&mut f, 0, mib * 16, &[I::Unreachable]),
        Accepts::Hogs { .. } => {
            for h in 0..hogs {
                f.instruction(&I::Call(h));
            }
        }
    }
    for i in reset.iter().chain(&[I::I32Const(1), I::End]) {
        f.instruction(i);
    }
    code.function(&f);
    // format, format-batch: ok(empty list), from a zeroed return area.
    for _ in 0..2 {
        let mut f = Function::new([]);
        for i in reset.iter().chain(&[I::I32Const(16), I::End]) {
            f.instruction(i);
        }
        code.function(&f);
    }
    // cabi_realloc(old, old_size, align, size): bump.
    let mut f = Function::new([(1, ValType::I32)]);
    for i in [
        I::GlobalGet(0),
        I::LocalGet(2),
        I::I32Add,
        I::I32Const(1),
        I::I32Sub,
        I::I32Const(0),
        I::LocalGet(2),
        I::I32Sub,
        I::I32And,
        I::LocalTee(4),
        I::LocalGet(3),
        I::I32Add,
        I::GlobalSet(0),
        I::LocalGet(4),
        I::End,
    ] {
        f.instruction(&i);
    }
    code.function(&f);
    // recurse: calls itself.
    let mut f = Function::new([]);
    f.instruction(&I::Call(f_recurse));
    f.instruction(&I::End);
    code.function(&f);
    m.section(&code);
    m
}

/// The component: the hogs' instances (if any), the main instance wired
/// to them, the 0.1 receiver world's types and its three functions lifted.
pub fn receiver(accepts: Accepts) -> Vec<u8> {
    use ComponentValType::{Primitive, Type};
    let (hogs, mib, strict) = match accepts {
        Accepts::Hogs { count, mib, strict } => (count, mib, strict),
        _ => (0, 0, false),
    };
    let mut b = ComponentBuilder::default();
    let hog_module = b.core_module(Some("hog"), &hog(mib, strict));
    let main = b.core_module(Some("main"), &main_module(accepts));
    let names: Vec<String> = (0..hogs).map(|h| format!("h{h}")).collect();
    let hogs: Vec<u32> = names
        .iter()
        .map(|n| b.core_instantiate(Some(n), hog_module, Vec::<(&str, ModuleArg)>::new()))
        .collect();
    let args: Vec<(&str, ModuleArg)> = names
        .iter()
        .zip(&hogs)
        .map(|(n, &i)| (n.as_str(), ModuleArg::Instance(i)))
        .collect();
    let m = b.core_instantiate(Some("main"), main, args);
    let mem = b.core_alias_export(None, m, "memory", ExportKind::Memory);
    let realloc = b.core_alias_export(None, m, "cabi_realloc", ExportKind::Func);
    let core: Vec<u32> = ["accepts", "format", "format-batch"]
        .iter()
        .map(|name| b.core_alias_export(None, m, name, ExportKind::Func))
        .collect();

    let string = || Primitive(P::String);
    let (kind, t) = b.type_defined(None);
    t.enum_type(["insert", "modify", "remove"]);
    let kind = b.export("change-kind", ComponentExportKind::Type, kind, None);
    let (opt, t) = b.type_defined(None);
    t.option(string());
    let (strings, t) = b.type_defined(None);
    t.list(string());
    let (change, t) = b.type_defined(None);
    t.record([
        ("key", string()),
        ("kind", Type(kind)),
        ("new-image", Type(opt)),
        ("old-image", Type(opt)),
        ("changed-paths", Type(strings)),
        ("sequence", string()),
        ("time-ms", Primitive(P::U64)),
    ]);
    let change = b.export("change", ComponentExportKind::Type, change, None);
    let (bytes, t) = b.type_defined(None);
    t.list(Primitive(P::U8));
    let (pair, t) = b.type_defined(None);
    t.tuple([string(), string()]);
    let (pairs, t) = b.type_defined(None);
    t.list(Type(pair));
    let (message, t) = b.type_defined(None);
    t.record([
        ("body", Type(bytes)),
        ("content-type", string()),
        ("group", Type(opt)),
        ("attributes", Type(pairs)),
    ]);
    let message = b.export("message", ComponentExportKind::Type, message, None);
    let (error, t) = b.type_defined(None);
    t.variant([("reject", Some(string())), ("retry", Some(string()))]);
    let error = b.export("format-error", ComponentExportKind::Type, error, None);
    let (messages, t) = b.type_defined(None);
    t.list(Type(message));
    let (result, t) = b.type_defined(None);
    t.result(Some(Type(messages)), Some(Type(error)));
    let (changes, t) = b.type_defined(None);
    t.list(Type(change));

    let (accepts_ty, mut t) = b.type_function(None);
    t.params([("change", Type(change))])
        .result(Some(Primitive(P::Bool)));
    let (format_ty, mut t) = b.type_function(None);
    t.params([("change", Type(change))])
        .result(Some(Type(result)));
    let (batch_ty, mut t) = b.type_function(None);
    t.params([("changes", Type(changes))])
        .result(Some(Type(result)));

    for ((name, ty), core) in [
        ("accepts", accepts_ty),
        ("format", format_ty),
        ("format-batch", batch_ty),
    ]
    .into_iter()
    .zip(core)
    {
        let options = [
            wasm_encoder::CanonicalOption::UTF8,
            wasm_encoder::CanonicalOption::Memory(mem),
            wasm_encoder::CanonicalOption::Realloc(realloc),
        ];
        let f = b.lift_func(None, core, ty, options);
        b.export(name, ComponentExportKind::Func, f, None);
    }
    b.finish()
}
