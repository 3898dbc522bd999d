//! ImageNet-style weights (1000-class head, torchvision names) into a ResNet
//! with a 3-class head: the backbone loads, the head keeps its initial values.

use strata_nn::model::write_safetensors_atomic;
use strata_zoo::{
    build, load_matching_weights, load_weights_auto, strata_to_torchvision, ZooOptions,
};

#[test]
fn a_1000_class_file_loads_the_backbone_of_a_3_class_resnet() {
    let opts = |classes, seed| ZooOptions {
        classes: Some(classes),
        input_shape: Some([32, 32, 3]),
        seed,
    };
    let source = build("resnet18", &opts(1000, 1)).unwrap();
    let dir = std::env::temp_dir().join(format!("strata-skip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("imagenet.safetensors");
    write_safetensors_atomic(&path, &strata_to_torchvision(&source), None).unwrap();

    let mut target = build("resnet18", &opts(3, 2)).unwrap();
    let head_before = target.layer("fc").unwrap().weights()[0].value.to_vec();
    assert!(
        load_weights_auto(&mut target, &path).is_err(),
        "a strict load must refuse the 1000-class head"
    );
    let warnings = load_matching_weights(&mut target, &path).unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("fc.weight")),
        "{warnings:?}"
    );
    let get = |m: &strata_nn::Model, n: &str| {
        m.named_weights()
            .into_iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .value
            .to_vec()
    };
    assert_eq!(get(&target, "conv1.kernel"), get(&source, "conv1.kernel"));
    assert_eq!(
        get(&target, "layer4.1.bn2.moving_variance"),
        get(&source, "layer4.1.bn2.moving_variance")
    );
    assert_eq!(
        target.layer("fc").unwrap().weights()[0].value.to_vec(),
        head_before
    );
}
