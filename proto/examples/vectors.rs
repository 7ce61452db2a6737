//! Prints the test vectors of docs/PROTOCOL.md.
//!
//! Run with: `cargo run -p phonebook-proto --example vectors`
use phonebook_proto::{Keypair, PlayerName, Register, Unregister, b64};

fn main() {
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let kp = Keypair::from_seed(&seed);
    let friend = Keypair::from_seed(&[0x42; 32]).public();
    // A fixed salt for the vectors only: real registrations draw a fresh random one.
    let salt: [u8; 32] = core::array::from_fn(|i| 0x20 + i as u8);
    let name = PlayerName::parse("Y'shtola Rhul@Gilgamesh").unwrap();
    let reg = Register::sign_friends(
        &kp,
        name.clone(),
        55000,
        vec![friend],
        salt,
        1_764_000_000_000,
    );
    println!(
        "seed (hex): {}",
        seed.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    println!("publicKey: {}", kp.public());
    println!("friend publicKey: {friend}");
    println!("friendsSalt: {}", b64::encode(&salt));
    println!(
        "friendsDigest: {}",
        b64::encode(&reg.fields().friends_digest)
    );
    println!(
        "register message: {:?}",
        String::from_utf8(reg.fields().message()).unwrap()
    );
    println!("register signature: {}", reg.signature.to_base64());
    println!("register body: {}", reg.to_json());
    let un = Unregister::sign(&kp, name, 1_764_000_100_000);
    println!("unregister signature: {}", un.signature.to_base64());
    println!("unregister body: {}", un.to_json());
    // The friend's own (public) registration in the examples of docs/PROTOCOL.md.
    let krile = Register::sign_public(
        &Keypair::from_seed(&[0x42; 32]),
        PlayerName::parse("Krile Baldesion@Gilgamesh").unwrap(),
        55001,
        1_764_000_000_000,
    );
    println!("friend register body: {}", krile.to_json());
}
