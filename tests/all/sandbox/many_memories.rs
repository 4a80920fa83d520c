//! A receiver component built by hand with eight linear memories: one core
//! module for the canonical ABI and seven "hog" modules, each with a memory
//! of its own that it grows by 60 MiB and touches on every `accepts`. A
//! plugin author gets there by composing components (`wac`), which is
//! legal; a memory cap per memory would let it hold seven times its
//! `memory_mib`. The host must count all eight against one cap.
//!
//! It imports nothing and exports the 0.1 receiver world: `accepts`
//! answers true after the hogs ran, `format` and `format-batch` answer
//! `ok([])`.

use wasm_encoder::{
    BlockType, CodeSection, ComponentBuilder, ComponentExportKind, ComponentValType, ConstExpr,
    ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, ImportSection,
    Instruction as I, MemorySection, MemoryType, Module, ModuleArg, PrimitiveValType as P,
    TypeSection, ValType,
};

/// Memories besides the main module's.
pub(crate) const HOGS: u32 = 7;
/// What each hog grows its memory by and touches (MiB).
pub(crate) const HOG_MIB: u32 = 60;

fn memory(min_pages: u64) -> MemoryType {
    MemoryType {
        minimum: min_pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    }
}

/// A module with one memory, empty at first, exporting `hog`: the first
/// call grows it by [`HOG_MIB`] and writes every byte; a refused grow is
/// left alone.
fn hog() -> Module {
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
    let pages = HOG_MIB * 16;
    let mut f = Function::new([]);
    for i in [
        I::MemorySize(0),
        I::I32Eqz,
        I::If(BlockType::Empty),
        I::I32Const(pages as i32),
        I::MemoryGrow(0),
        I::I32Const(-1),
        I::I32Ne,
        I::If(BlockType::Empty),
        I::I32Const(0),
        I::I32Const(1),
        I::I32Const((pages * 65536) as i32),
        I::MemoryFill(0),
        I::End,
        I::End,
        I::End,
    ] {
        f.instruction(&i);
    }
    let mut code = CodeSection::new();
    code.function(&f);
    m.section(&code);
    m
}

/// The module the canonical ABI talks to: its own memory (16 pages), a
/// bump allocator reset after every call, `accepts` that runs every hog.
fn main_module() -> Module {
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
    for h in 0..HOGS {
        imports.import(
            &format!("h{h}"),
            "hog",
            wasm_encoder::EntityType::Function(0),
        );
    }
    m.section(&imports);
    let mut funcs = FunctionSection::new();
    for ty in [1, 1, 2, 3] {
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
    let (accepts, format, format_batch, realloc) = (HOGS, HOGS + 1, HOGS + 2, HOGS + 3);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("accepts", ExportKind::Func, accepts);
    exports.export("format", ExportKind::Func, format);
    exports.export("format-batch", ExportKind::Func, format_batch);
    exports.export("cabi_realloc", ExportKind::Func, realloc);
    m.section(&exports);

    let reset = [I::I32Const(1024), I::GlobalSet(0)];
    let mut code = CodeSection::new();
    // accepts: every hog, then true.
    let mut f = Function::new([]);
    for h in 0..HOGS {
        f.instruction(&I::Call(h));
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
    m.section(&code);
    m
}

/// The component: seven hog instances, the main instance wired to them,
/// the 0.1 receiver world's types and its three functions lifted.
pub(crate) fn component() -> Vec<u8> {
    use ComponentValType::{Primitive, Type};
    let mut b = ComponentBuilder::default();
    let hog_module = b.core_module(Some("hog"), &hog());
    let main = b.core_module(Some("main"), &main_module());
    let names: Vec<String> = (0..HOGS).map(|h| format!("h{h}")).collect();
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
