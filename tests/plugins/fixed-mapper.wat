;; A plan-mapper plugin of contract 1.1 (plugins/wit-1.1) written by hand in WebAssembly
;; text: whatever it is asked, it chooses the template named "small". 1.1 mappers export
;; `choose` alone (the catalogue comes with every request); this one shows they keep loading
;; and answering under a later contract.
;;
;; Build: as echo.wat, with plugins/wit-1.1 and world `plan-mapper`.
(module
  (memory (export "memory") 1)
  (data (i32.const 1000) "small")
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
  ;; choose(req: mapping-request) -> result<choice, plugin-error>: the request comes as a
  ;; pointer (it has more than 16 flat values), the answer goes back as one.
  (func (export "vmauto:plugin/mapper@1.1.0#choose") (param $req i32) (result i32)
    ;; the return area at 1024: ok (0), then the choice at 1028: template (0), name "small"
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store8 (i32.const 1028) (i32.const 0))
    (i32.store (i32.const 1032) (i32.const 1000))
    (i32.store (i32.const 1036) (i32.const 5))
    (i32.const 1024))
  (func (export "cabi_post_vmauto:plugin/mapper@1.1.0#choose") (param i32)
    (global.set $heap (i32.const 4096)))
)
