//! Checks the test vectors printed in docs/PROTOCOL.md, read from that file.

use phonebook_proto::{
    Keypair, LookupId, PlayerName, PublicKey, Register, Signature, Unregister, b64,
    signed::{unregister_message, unregister_message_id},
};
use std::collections::HashMap;

fn vectors() -> HashMap<String, String> {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let start = doc.find("```text test-vectors\n").expect("vector block") + 21;
    let end = start + doc[start..].find("```").expect("block end");
    doc[start..end]
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.replace("\\n", "\n")))
        .collect()
}

#[test]
fn protocol_md_vectors_hold() {
    let v = vectors();
    let seed_hex = &v["seed"];
    let seed: [u8; 32] =
        core::array::from_fn(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).unwrap());
    let kp = Keypair::from_seed(&seed);
    assert_eq!(kp.public().to_base64(), v["publicKey"]);
    let friend = Keypair::from_seed(&[0x42; 32]).public();
    assert_eq!(friend.to_base64(), v["friendPublicKey"]);
    let salt: [u8; 32] = core::array::from_fn(|i| 0x20 + i as u8);
    assert_eq!(b64::encode(&salt), v["friendsSalt"]);

    let name = PlayerName::parse("Y'shtola Rhul@Gilgamesh").unwrap();
    let by_id = Register::sign_friends(
        &kp,
        name.clone(),
        55000,
        vec![friend],
        salt,
        1_764_000_000_000,
    );
    let id = LookupId::of(&name);
    if std::env::var_os("PRINT_VECTORS").is_some() {
        let msg = unregister_message_id(&id, &kp.public(), 1_764_000_100_000);
        println!("lookupId: {id}");
        println!(
            "registerMessageV3: {}",
            String::from_utf8(by_id.fields().message())
                .unwrap()
                .replace('\n', "\\n")
        );
        println!("registerSignatureV3: {}", by_id.signature.to_base64());
        println!("registerBodyV3: {}", by_id.to_json());
        println!(
            "unregisterMessageV3: {}",
            String::from_utf8(msg.clone()).unwrap().replace('\n', "\\n")
        );
        println!("unregisterSignatureV3: {}", kp.sign(&msg).to_base64());
    }
    assert_eq!(id.to_text(), v["lookupId"]);
    assert_eq!(
        String::from_utf8(by_id.fields().message()).unwrap(),
        v["registerMessageV3"]
    );
    assert_eq!(by_id.signature.to_base64(), v["registerSignatureV3"]);
    assert_eq!(by_id.to_json(), v["registerBodyV3"]);
    let parsed = Register::from_json(v["registerBodyV3"].as_bytes()).unwrap();
    assert_eq!(
        (parsed.id, parsed.name.as_ref(), parsed.verify()),
        (id, None, Ok(()))
    );
    let msg = unregister_message_id(&id, &kp.public(), 1_764_000_100_000);
    assert_eq!(String::from_utf8(msg).unwrap(), v["unregisterMessageV3"]);
    assert_eq!(
        Unregister::sign(&kp, name.clone(), 1_764_000_100_000)
            .signature
            .to_base64(),
        v["unregisterSignatureV3"]
    );

    // The original plan's form, by name (versions 1 and 2), still accepted.
    let reg = by_id.signed_by_name(&kp, name.clone());
    assert_eq!(
        b64::encode(&reg.fields().friends_digest),
        v["friendsDigest"]
    );
    assert_eq!(
        String::from_utf8(reg.fields().message()).unwrap(),
        v["registerMessage"]
    );
    assert_eq!(reg.signature.to_base64(), v["registerSignature"]);
    assert_eq!(reg.to_json(), v["registerBody"]);
    // The body in the document parses and verifies on its own.
    let parsed = Register::from_json(v["registerBody"].as_bytes()).unwrap();
    assert_eq!(parsed.verify(), Ok(()));

    let key = PublicKey::from_base64(&v["publicKey"]).unwrap();
    let msg = unregister_message(&name, &key, 1_764_000_100_000);
    assert_eq!(
        String::from_utf8(msg.clone()).unwrap(),
        v["unregisterMessage"]
    );
    let sig = Signature::from_base64(&v["unregisterSignature"]).unwrap();
    assert_eq!(key.verify(&msg, &sig), Ok(()));
    assert_eq!(
        Unregister::sign_by_name(&kp, name, 1_764_000_100_000).signature,
        sig
    );
}

/// Every player name the document uses as an example obeys the document's own name rule (the
/// batch example once asked for `A Bc@World`, a one-letter forename), and the table of valid
/// and invalid names in "Player names" says what the code does.
#[test]
fn protocol_md_example_names_obey_the_name_rule() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let mut checked = 0;
    // Names in JSON examples: "playerName":"..." and the items of "names":[...].
    for (i, _) in doc.match_indices("\"playerName\":\"") {
        let rest = &doc[i + 14..];
        let name = &rest[..rest.find('"').unwrap()];
        if !name.starts_with('<') {
            assert!(PlayerName::parse(name).is_ok(), "{name:?}");
            checked += 1;
        }
    }
    for (i, _) in doc.match_indices("\"names\":[") {
        let rest = &doc[i + 9..];
        for item in rest[..rest.find(']').unwrap()].split(',') {
            let name = item.trim().trim_matches('"');
            if !name.is_empty() && !name.starts_with('<') && name != "..." {
                assert!(PlayerName::parse(name).is_ok(), "{name:?}");
                checked += 1;
            }
        }
    }
    // The table of the "Player names" section: `name` cells, valid when the row says yes.
    let section = &doc[doc.find("## Player names").unwrap()..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let valid = row.trim_end().ends_with("| yes |");
        for (j, cell) in row.split('`').enumerate() {
            if j % 2 == 1 && cell.contains('@') {
                assert_eq!(PlayerName::parse(cell).is_ok(), valid, "{cell:?} in {row}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} names found");
}
