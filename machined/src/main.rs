//! machined's entry point; everything lives in the library.

fn main() {
    if std::process::id() != 1 {
        eprintln!(
            "machined is the init process of a Cairn node and must run as PID 1 \
             (it mounts filesystems, reaps orphans and reboots the machine)"
        );
        std::process::exit(2);
    }
    machined::pid1::main()
}
