//! Neighbour lists. Level 0 is one flat buffer with a fixed stride per slot, so a
//! search reads a slot's neighbours from one cache-friendly run of memory. The upper
//! levels hold few slots and keep a small vector per slot.

/// The neighbour lists of every slot on every level.
#[derive(Clone)]
pub(super) struct Graph {
    max_neighbors: usize,
    /// Per slot: a count, then up to `2 × M` neighbour slots.
    level0: Vec<u32>,
    /// Per slot: for each level above 0, a count then up to `M` neighbour slots.
    upper: Vec<Vec<u32>>,
    levels: Vec<u8>,
    entry: Option<u32>,
    max_level: usize,
}

impl Graph {
    pub fn new(max_neighbors: usize) -> Graph {
        Graph {
            max_neighbors,
            level0: Vec::new(),
            upper: Vec::new(),
            levels: Vec::new(),
            entry: None,
            max_level: 0,
        }
    }

    /// Returns how many neighbours a slot may have on `level`.
    pub fn capacity(&self, level: usize) -> usize {
        if level == 0 {
            self.max_neighbors * 2
        } else {
            self.max_neighbors
        }
    }

    fn stride(&self, level: usize) -> usize {
        1 + self.capacity(level)
    }

    /// Adds a slot with no neighbours on levels `0..=level`.
    pub fn push(&mut self, level: usize) -> u32 {
        let slot = self.levels.len() as u32;
        self.level0.resize(self.level0.len() + self.stride(0), 0);
        self.upper.push(vec![0; level * self.stride(1)]);
        self.levels.push(level as u8);
        slot
    }

    /// Returns the number of slots.
    pub fn slots(&self) -> usize {
        self.levels.len()
    }

    /// Returns the top level of a slot.
    pub fn level(&self, slot: u32) -> usize {
        usize::from(self.levels[slot as usize])
    }

    pub fn entry(&self) -> Option<u32> {
        self.entry
    }

    pub fn max_level(&self) -> usize {
        self.max_level
    }

    pub fn set_entry(&mut self, slot: u32, level: usize) {
        self.entry = Some(slot);
        self.max_level = level;
    }

    fn range(&self, slot: u32, level: usize) -> (bool, usize) {
        if level == 0 {
            (true, slot as usize * self.stride(0))
        } else {
            (false, (level - 1) * self.stride(1))
        }
    }

    /// Returns the neighbours of a slot on a level.
    pub fn neighbours(&self, slot: u32, level: usize) -> &[u32] {
        let (flat, start) = self.range(slot, level);
        let buffer: &[u32] = if flat {
            &self.level0
        } else {
            &self.upper[slot as usize]
        };
        let count = buffer[start] as usize;
        &buffer[start + 1..start + 1 + count]
    }

    /// Asks the CPU to load a slot's level-0 neighbour list into cache. Upper levels
    /// are small and visited rarely, so they get no prefetch.
    #[inline]
    pub fn prefetch_neighbours(&self, slot: u32, level: usize) {
        if level == 0 {
            let start = slot as usize * self.stride(0);
            crate::kernels::prefetch(&self.level0[start..start + self.stride(0)]);
        }
    }

    /// Replaces the neighbours of a slot on a level. `neighbours` must fit the
    /// level's capacity.
    pub fn set_neighbours(&mut self, slot: u32, level: usize, neighbours: &[u32]) {
        debug_assert!(neighbours.len() <= self.capacity(level));
        let (flat, start) = self.range(slot, level);
        let buffer: &mut [u32] = if flat {
            &mut self.level0
        } else {
            &mut self.upper[slot as usize]
        };
        buffer[start] = neighbours.len() as u32;
        buffer[start + 1..start + 1 + neighbours.len()].copy_from_slice(neighbours);
    }

    /// Appends a neighbour if the list has room; returns whether it did.
    pub fn try_push_neighbour(&mut self, slot: u32, level: usize, neighbour: u32) -> bool {
        let capacity = self.capacity(level);
        let (flat, start) = self.range(slot, level);
        let buffer: &mut [u32] = if flat {
            &mut self.level0
        } else {
            &mut self.upper[slot as usize]
        };
        let count = buffer[start] as usize;
        if count >= capacity {
            return false;
        }
        buffer[start + 1 + count] = neighbour;
        buffer[start] += 1;
        true
    }

    pub fn memory_bytes(&self) -> usize {
        self.level0.capacity() * 4
            + self
                .upper
                .iter()
                .map(|levels| levels.capacity() * 4 + 24)
                .sum::<usize>()
            + self.levels.capacity()
    }
}
