//! ImageNet class names for printing a classifier's predictions. (Image
//! preprocessing, timm's evaluation transform included, is `vision`'s.)

/// The ImageNet-1k class names in class-index order (first WordNet lemma of
/// each synset; made by `scripts/make_imagenet_classes.py`).
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_in_index_order() {
        let names = imagenet_classes();
        assert_eq!(names.len(), 1000);
        assert_eq!((names[0], names[207]), ("tench", "golden retriever"));
    }
}
