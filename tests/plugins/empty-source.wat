;; A billing-source plugin of contract 1.1 (plugins/wit-1.1) written by hand in WebAssembly
;; text: it answers every request with no events. The `source` interface did not change
;; after 1.1, so the host binds it with the current bindings; this shows that works.
;;
;; Build: as echo.wat, with plugins/wit-1.1.
(module
  (memory (export "memory") 1)
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
  (func (export "vmauto:plugin/source@1.1.0#parse") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    ;; the return area at 1024: ok (0), an empty list
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 1028) (i32.const 2048))
    (i32.store (i32.const 1032) (i32.const 0))
    (i32.const 1024))
  (func (export "cabi_post_vmauto:plugin/source@1.1.0#parse") (param i32)
    (global.set $heap (i32.const 4096)))
)
