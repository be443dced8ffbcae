;; A billing-source plugin of contract 1.0 (plugins/wit-1.0) written by hand in WebAssembly
;; text, to show the contract is language-neutral and that 1.0 components keep loading. It
;; answers every request with one `ignore` event whose subscription id is the request's source
;; name and whose customer id is the request's path.
;;
;; Build: wat2wasm-equivalent (`wat` crate) -> `wit_component::embed_component_metadata`
;; with world `billing-source` -> `wit_component::ComponentEncoder` (tests/plugins/support.rs),
;; or with wasm-tools: `wasm-tools parse echo.wat -o echo.core.wasm`,
;; `wasm-tools component embed plugins/wit-1.0 --world billing-source echo.core.wasm -o e.wasm`,
;; `wasm-tools component new e.wasm -o echo.wasm`.
(module
  (memory (export "memory") 1)
  ;; A bump allocator for the host's arguments, reset after every call.
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (br_if $fits
        (i32.ne
          (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))
          (i32.const -1)))
      unreachable)
    (local.get $ptr))
  ;; parse(req: request) -> result<list<event>, plugin-error>
  ;; params: source (ptr, len), path (ptr, len), headers, body, settings (ptr, len each)
  (func (export "vmauto:plugin/source@1.0.0#parse")
    (param $src i32) (param $src_len i32) (param $path i32) (param $path_len i32)
    (param i32 i32 i32 i32 i32 i32) (result i32)
    ;; the event at 1040 (size 96, align 8), zeroed: kind, options and strings empty
    (memory.fill (i32.const 1040) (i32.const 0) (i32.const 96))
    (i32.store8 (i32.const 1040) (i32.const 5))                 ;; kind = ignore
    (i32.store8 (i32.const 1080) (i32.const 1))                 ;; subscription-id = some(
    (i32.store (i32.const 1084) (local.get $src))               ;;   source)
    (i32.store (i32.const 1088) (local.get $src_len))
    (i32.store (i32.const 1092) (local.get $path))              ;; customer.id = path
    (i32.store (i32.const 1096) (local.get $path_len))
    ;; the return area at 1024: ok (0), list pointer, list length
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 1028) (i32.const 1040))
    (i32.store (i32.const 1032) (i32.const 1))
    (i32.const 1024))
  (func (export "cabi_post_vmauto:plugin/source@1.0.0#parse") (param i32)
    (global.set $heap (i32.const 4096)))
)
