"""Word lists the fleet generator draws from. Data, not logic."""

from __future__ import annotations

# (IANA name, share of parents). Kolkata dominates the real fleet; a US and a
# European zone with DST make local-day and DST bugs visible.
TIMEZONES: list[tuple[str, float]] = [
    ("Asia/Kolkata", 0.42),
    ("America/New_York", 0.14),
    ("America/Los_Angeles", 0.08),
    ("Europe/London", 0.10),
    ("Europe/Berlin", 0.08),
    ("Asia/Singapore", 0.06),
    ("Asia/Dubai", 0.06),
    ("Australia/Sydney", 0.06),
]
LANGUAGES: list[tuple[str, str, float]] = [
    ("en", "English", 0.70),
    ("hi", "Hindi", 0.18),
    ("es", "Spanish", 0.06),
    ("de", "German", 0.06),
]
# Not valid IANA names: what --messy writes into profiles.
BAD_TIMEZONES = ["Asia/Bangalore", "IST+5:30", "Mars/Olympus_Mons", "America/NewYork", "GMT+530"]

FIRST_NAMES = [
    "Aarav", "Vivaan", "Aditya", "Ishaan", "Diya", "Ananya", "Saanvi", "Myra", "Kabir", "Anika",
    "Riya", "Arjun", "Zara", "Meera", "Rohan", "Tara", "Noah", "Emma", "Liam", "Olivia",
    "Ava", "Mia", "Lucas", "Sofia", "Leo", "Ella", "Mateo", "Isla", "Finn", "Lena",
    "Jonas", "Emil", "Hannah", "Maya", "Omar", "Layla", "Yusuf", "Aisha", "Ethan", "Chloe",
    "Kiara", "Dev", "Nisha", "Ira", "Veer", "Pari", "Hugo", "Alba", "Theo", "Nora",
]
PARENT_NAMES = [
    "Priya", "Rahul", "Neha", "Amit", "Sunita", "Vikram", "Sarah", "James", "Emily", "Michael",
    "Laura", "David", "Anna", "Thomas", "Julia", "Daniel", "Fatima", "Ahmed", "Kavya", "Suresh",
    "Carmen", "Javier", "Katrin", "Stefan", "Grace", "Oliver", "Lakshmi", "Arun", "Rachel", "Ben",
]
SURNAMES = [
    "Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Singh", "Nair", "Khan", "Smith", "Johnson",
    "Brown", "Garcia", "Martinez", "Müller", "Schmidt", "Weber", "Taylor", "Wilson", "Chen", "Tan",
    "Rossi", "Kumar", "Das", "Mehta", "Fischer", "Evans", "Lopez", "Ali", "Joshi", "Bose",
]
INTERESTS = [
    "dinosaurs", "space", "animals", "drawing", "music", "football", "cricket", "puzzles",
    "stories", "science", "dancing", "cars", "princesses", "robots", "ocean", "bugs", "cooking",
]
GRADES = ["Pre-K", "Kindergarten", "Grade 1", "Grade 2", "Grade 3", "Grade 4", "Grade 5"]
SCHOOLS = ["Green Valley School", "Sunrise Academy", "Oakwood Primary", "Little Stars", "Riverside Elementary"]

# Planted facts: (fact kind, values, the sentence in the memory file, a
# paraphrased question that a search for that fact should answer).
FACTS: list[tuple[str, list[str], str, str]] = [
    (
        "favourite_animal",
        ["red panda", "elephant", "dolphin", "giraffe", "penguin", "tiger", "octopus", "koala", "owl", "cheetah"],
        "- Favourite animal: the {value}. {name} loves {value}s and asks about them again and again.",
        "What animal does the child love?",
    ),
    (
        "favourite_colour",
        ["purple", "turquoise", "bright orange", "sunny yellow", "emerald green", "sky blue", "pink"],
        "- Favourite colour: {value}. {name} picks {value} crayons for every drawing.",
        "Which colour does the kid like best?",
    ),
    (
        "pet",
        ["a turtle called Bubbles", "a cat called Mishti", "a dog called Bruno", "a rabbit called Coco",
         "a goldfish called Nemo", "a parrot called Mithu", "a hamster called Peanut"],
        "- Pet: {name} has {value} and talks about feeding it every morning.",
        "Does the child have a pet, and what is it called?",
    ),
    (
        "best_friend",
        ["Kiaan", "Sophie", "Arnav", "Mila", "Reyansh", "Ben", "Aditi", "Lukas", "Zoya"],
        "- Best friend: {value}. They sit together at school and share lunch.",
        "Who is the kid's closest friend at school?",
    ),
    (
        "favourite_food",
        ["mango ice cream", "pasta with cheese", "masala dosa", "pancakes", "strawberries", "butter chicken"],
        "- Favourite food: {value}, always asked for as a weekend treat.",
        "What does the child most like to eat?",
    ),
    (
        "fear",
        ["thunderstorms", "the dark", "loud fireworks", "big dogs", "the vacuum cleaner"],
        "- Scared of {value}; a calm voice and a short story help {name} feel safe.",
        "What makes the child feel frightened?",
    ),
    (
        "dream_job",
        ["astronaut", "doctor", "firefighter", "marine biologist", "chef", "pilot", "football player"],
        "- When grown up, {name} wants to be a {value}.",
        "What does the kid want to become later in life?",
    ),
]

CHAT_USER = [
    "Cheeko, tell me a story!", "Why is the sky blue?", "Can we play a game?", "What do dinosaurs eat?",
    "How far is the moon?", "Sing me a song please", "I drew a rocket today", "What is seven plus five?",
    "Do you like elephants?", "Tell me a joke", "How do fish breathe?", "I'm bored", "What's the biggest animal?",
    "Can you count to twenty?", "Why do cats purr?", "I lost my tooth!", "What rhymes with cat?",
    "How do planes fly?", "Let's do a quiz", "Good night Cheeko",
]
CHAT_ASSISTANT = [
    "Once upon a time, in a forest full of fireflies...", "Sunlight bounces off tiny bits of air, and blue light scatters the most!",
    "Yes! Let's play a guessing game.", "Some dinosaurs ate plants, others ate meat.", "About 384,000 kilometres away!",
    "Here's a little song: twinkle, twinkle...", "Wow, a rocket! Where is it flying to?", "Seven plus five is twelve. Great question!",
    "I love elephants! They never forget.", "Why did the banana go to the doctor? It wasn't peeling well!",
    "Fish breathe with gills that take oxygen from water.", "How about we build a story together?",
    "The blue whale is the biggest animal ever!", "One, two, three... let's count together!",
    "Cats purr when they feel happy and safe.", "That's exciting! The tooth fairy might visit.",
    "Hat, bat, mat and sat all rhyme with cat!", "Wings push air down so the plane goes up.",
    "Quiz time! First question coming up.", "Good night! Sweet dreams.",
]

SUBJECTS: dict[str, list[str]] = {
    "math": ["counting", "addition", "subtraction", "shapes", "patterns"],
    "english": ["phonics", "rhymes", "spelling", "vocabulary"],
    "science": ["animals", "plants", "space", "weather", "human_body"],
    "general_knowledge": ["geography", "flags", "festivals"],
}
# The app's game modes (analytics_game_sessions.mode_type): mode -> (game_type of its attempts, the SUBJECTS skill
# a child draws on, share of sessions, {question_type: share}); None is a question the app leaves untyped.
GAME_MODES: dict[str, tuple[str, str, float, dict[str | None, float]]] = {
    "Math": ("math_tutor", "math", 0.45, {"addition": 0.35, "subtraction": 0.3, "multiplication": 0.2, "division": 0.15}),
    "WordLadder": ("word_ladder", "english", 0.3, {"rhyming": 0.4, "spelling": 0.35, "opposites": 0.25}),
    "Riddle": ("riddle_solver", "general_knowledge", 0.25, {None: 0.7, "animals": 0.2, "objects": 0.1}),
}
DIFFICULTIES = [("easy", 0.5), ("medium", 0.35), ("hard", 0.15)]
# How much easier (+) or harder (-) a question type is than the child's skill in the game's subject.
QUESTION_EASE: dict[str | None, float] = {
    "addition": 0.06, "subtraction": 0.0, "multiplication": -0.05, "division": -0.1,
    "rhyming": 0.05, "spelling": -0.06, "opposites": 0.03, None: 0.0, "animals": 0.05, "objects": -0.02,
}
# Operands per math question type and difficulty: ((x from, x to), (y from, y to)), inclusive. Each (x, y) is one
# question: x + y, (x + y) - y, x × y, (x × y) ÷ y, so distinct operands never ask the same question.
MATH_OPERANDS: dict[str, dict[str, tuple[tuple[int, int], tuple[int, int]]]] = {
    "addition": {"easy": ((1, 9), (1, 9)), "medium": ((5, 30), (5, 30)), "hard": ((15, 99), (15, 99))},
    "subtraction": {"easy": ((1, 9), (1, 9)), "medium": ((5, 30), (5, 30)), "hard": ((15, 99), (15, 99))},
    "multiplication": {"easy": ((1, 5), (1, 5)), "medium": ((2, 10), (2, 10)), "hard": ((3, 12), (6, 15))},
    "division": {"easy": ((1, 5), (1, 5)), "medium": ((2, 10), (2, 10)), "hard": ((3, 12), (6, 12))},
}
# Word and riddle questions per question type: (question, answer, two wrong answers a child gives).
WORD_QUESTIONS: dict[str | None, list[tuple[str, str, str, str]]] = {
    "rhyming": [
        ("What rhymes with cat?", "hat", "dog", "cup"), ("What rhymes with sun?", "fun", "moon", "sky"),
        ("What rhymes with tree?", "bee", "leaf", "car"), ("What rhymes with cake?", "lake", "pie", "cook"),
        ("What rhymes with star?", "car", "sky", "moon"), ("What rhymes with frog?", "log", "pond", "toad"),
        ("What rhymes with book?", "cook", "page", "read"), ("What rhymes with rain?", "train", "cloud", "wet"),
        ("What rhymes with bear?", "chair", "wolf", "cave"), ("What rhymes with ball?", "wall", "bat", "kick"),
        ("What rhymes with fish?", "dish", "swim", "boat"), ("What rhymes with night?", "light", "dark", "moon"),
        ("What rhymes with goat?", "boat", "sheep", "farm"),
    ],
    "spelling": [
        ("How do you spell elephant?", "elephant", "elefant", "elephent"),
        ("How do you spell giraffe?", "giraffe", "girafe", "jiraffe"),
        ("How do you spell rainbow?", "rainbow", "rainbo", "ranebow"),
        ("How do you spell friend?", "friend", "freind", "frend"),
        ("How do you spell because?", "because", "becuase", "becos"),
        ("How do you spell school?", "school", "skool", "shcool"),
        ("How do you spell banana?", "banana", "bananna", "banan"),
        ("How do you spell penguin?", "penguin", "pengwin", "penguine"),
        ("How do you spell butterfly?", "butterfly", "butterfli", "buterfly"),
        ("How do you spell dinosaur?", "dinosaur", "dinosor", "dinasaur"),
        ("How do you spell orange?", "orange", "orenge", "oringe"),
        ("How do you spell yellow?", "yellow", "yelow", "yello"),
        ("How do you spell library?", "library", "libary", "liberry"),
    ],
    "opposites": [
        ("What is the opposite of hot?", "cold", "warm", "sunny"), ("What is the opposite of big?", "small", "huge", "tall"),
        ("What is the opposite of up?", "down", "top", "high"), ("What is the opposite of happy?", "sad", "glad", "funny"),
        ("What is the opposite of fast?", "slow", "quick", "run"), ("What is the opposite of day?", "night", "sun", "morning"),
        ("What is the opposite of open?", "closed", "door", "wide"), ("What is the opposite of wet?", "dry", "rain", "water"),
        ("What is the opposite of full?", "empty", "more", "big"), ("What is the opposite of loud?", "quiet", "noisy", "big"),
        ("What is the opposite of old?", "new", "big", "grey"), ("What is the opposite of heavy?", "light", "strong", "big"),
        ("What is the opposite of tall?", "short", "big", "long"),
    ],
    None: [
        ("What gets wetter the more it dries?", "a towel", "a sponge", "the rain"),
        ("What has to be broken before you can use it?", "an egg", "a toy", "a cup"),
        ("What can you catch but not throw?", "a cold", "a ball", "a fish"),
        ("What belongs to you but other people use it more?", "your name", "your toys", "your bed"),
        ("What runs but never walks?", "water", "a dog", "a car"),
        ("What goes up but never comes down?", "your age", "a balloon", "a kite"),
        ("What falls but never gets hurt?", "rain", "a leaf", "a ball"),
        ("What can travel around the world while staying in a corner?", "a stamp", "a plane", "a map"),
        ("What can fill a room but takes up no space?", "light", "air", "a sofa"),
        ("The more you take, the more you leave behind. What are they?", "footsteps", "cookies", "photos"),
        ("What is always in front of you but can't be seen?", "the future", "your nose", "the wind"),
        ("What kind of room has no doors or windows?", "a mushroom", "a cave", "a box"),
        ("What can you break without touching it?", "a promise", "a glass", "a stick"),
    ],
    "animals": [
        ("I have a long trunk and big ears. Who am I?", "an elephant", "a mouse", "a lion"),
        ("I have black and white stripes. Who am I?", "a zebra", "a tiger", "a panda"),
        ("I hop and carry my baby in a pouch. Who am I?", "a kangaroo", "a rabbit", "a frog"),
        ("I have a very long neck and eat leaves from tall trees. Who am I?", "a giraffe", "a horse", "a camel"),
        ("I say moo and give you milk. Who am I?", "a cow", "a goat", "a sheep"),
        ("I have eight legs and spin a web. Who am I?", "a spider", "an ant", "a crab"),
        ("I sleep all winter and love honey. Who am I?", "a bear", "a bee", "a fox"),
        ("I can change my colour to hide. Who am I?", "a chameleon", "a snake", "a fish"),
        ("I am a bird that cannot fly, but I swim very well. Who am I?", "a penguin", "a duck", "an ostrich"),
        ("I carry my house on my back and move very slowly. Who am I?", "a tortoise", "a snail", "a crab"),
        ("I hoot at night and can turn my head right round. Who am I?", "an owl", "a bat", "a crow"),
        ("I am the king of the jungle and I roar. Who am I?", "a lion", "a tiger", "a bear"),
        ("I live in water and breathe with gills. Who am I?", "a fish", "a whale", "a duck"),
    ],
    "objects": [
        ("What has hands but cannot clap?", "a clock", "a glove", "a robot"),
        ("What has legs but cannot walk?", "a table", "a snake", "a chair"),
        ("What has a spine but no bones?", "a book", "a fish", "a snake"),
        ("What has a head and a tail but no body?", "a coin", "a snake", "a kite"),
        ("What has a thumb and four fingers but is not alive?", "a glove", "a hand", "a sock"),
        ("What has a tongue but cannot talk?", "a shoe", "a dog", "a bell"),
        ("What gets shorter the longer it burns?", "a candle", "a match", "a fire"),
        ("What rings but has no finger to wear it?", "a telephone", "a bell", "a doorbell"),
        ("What has many teeth but cannot bite?", "a comb", "a zip", "a saw"),
        ("What has one eye but cannot see?", "a needle", "a pirate", "a storm"),
        ("What has keys but cannot open locks?", "a piano", "a door", "a car"),
        ("What has a neck but no head?", "a bottle", "a shirt", "a giraffe"),
        ("What is full of holes but still holds water?", "a sponge", "a net", "a bucket"),
    ],
}

STORY_TITLES = [
    "The Brave Little Firefly", "Moon Rabbit's Picnic", "The Dragon Who Loved Books", "Ravi and the Rainbow Kite",
    "The Sleepy Lion", "Captain Whiskers at Sea", "The Magic Mango Tree", "Luna's Lantern", "The Tortoise Who Raced Again",
    "Pip the Penguin Learns to Fly", "The Clockwork Garden", "A Star Named Tara", "The Secret of Cloud Mountain",
    "Benny's Big Bake", "The Whale Who Sang", "Mira and the Monsoon",
]
STORY_CATEGORIES = ["bedtime", "adventure", "fairy_tale", "animals", "moral", "mythology"]
SONG_TITLES = [
    "Twinkle Twinkle Little Star", "Wheels on the Bus", "Baby Shark", "Old MacDonald", "Row Row Row Your Boat",
    "Head Shoulders Knees and Toes", "Itsy Bitsy Spider", "Machli Jal Ki Rani", "Johny Johny Yes Papa",
    "If You're Happy and You Know It", "The Alphabet Song", "Five Little Ducks", "Chanda Mama Door Ke",
]
MUSIC_CATEGORIES = ["nursery_rhyme", "lullaby", "dance", "learning", "festival"]
BOARDS = ["cheeko-v1", "cheeko-v2", "esp32-s3-box3"]
APP_VERSIONS = ["1.4.2", "1.5.0", "1.5.3", "1.6.0"]
MOODS = [
    "Cheerful and chatty all afternoon.", "A bit tired after school, but perked up for a story.",
    "Very curious today: lots of why-questions.", "Calm and focused during the quiz.",
    "Excited about the weekend plans.", "Slightly grumpy in the morning, happy by evening.",
]
FOLLOW_UPS = [
    "Ask how the school play rehearsal went.", "Continue the dragon story from where we stopped.",
    "Practise counting to fifty again.", "Check whether the drawing of the rocket is finished.",
    "Remind about brushing teeth before bed.", "Ask about the visit to grandma's house.",
]

# Cognova
COGNOVA_AGENTS = [
    ("Morning brief", "0 4 * * *", "Summarise my calendar, inbox and open tasks for today."),
    ("Inbox triage", "0 * * * *", "Triage new email into tasks and reminders."),
    ("Weekly review", "0 18 * * 5", "Write my weekly review from completed tasks and notes."),
    ("Repo watcher", "*/30 * * * *", "Check open pull requests and summarise review comments."),
    ("Expense tracker", "0 21 * * *", "Collect receipts from email and update the expenses sheet."),
    ("Reading digest", "0 7 * * 1", "Summarise saved articles from the reading list."),
]
COGNOVA_TOOLS = ["Bash", "Read", "Edit", "Write", "Grep", "Glob", "WebFetch", "TodoWrite"]
COGNOVA_PROJECTS = [
    ("Home renovation", "#f59e0b"), ("Side project: budget app", "#3b82f6"), ("Health", "#10b981"),
    ("Reading list", "#8b5cf6"), ("Work: Q4 planning", "#ef4444"), ("Travel", "#06b6d4"),
]
TASK_TITLES = [
    "Book dentist appointment", "Review PR for auth refactor", "Pay electricity bill", "Draft Q4 roadmap",
    "Order new filter for the purifier", "Renew passport", "Plan weekend trip", "Write blog post on DuckDB",
    "Call the plumber", "Update resume", "Back up photos", "Read chapter 5",
]
CONVERSATION_TITLES = [
    "Debugging the cron parser", "Trip itinerary for Goa", "Summarise the meeting notes", "SQL window functions",
    "Birthday gift ideas", "Refactor the billing module", "Explain pgvector indexes", "Weekly meal plan",
]
